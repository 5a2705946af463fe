"""Throughput and latency of Burrow's API against a bare Starlette app, in one run.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/api.py``). It starts two real
``burrow serve`` processes, one with default settings (the access log on, written to a
file as a service's log would be) and one with ``--no-access-log``, and, on the same ASGI
server with the same settings, a bare Starlette app returning a JSON object of the same
shape; then drives each with wrk at 32 concurrent connections (installing Debian's wrk if
it is missing), in rounds that measure every server in turn, and prints requests/s, p50
and p99 latency and the CPU time per request of each, and the ratios against the bare app:
each server's best round against the bare app's best (the verdict), and each round's. The
servers run on one core, wrk on the others. Every listener is on a free port.

Targets: authenticated GET /credentials/{id} >= 0.5x the bare app (issue 2), and >= 0.6x
with the defaults, access log on (issue 11).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import textwrap
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import BIN, cpu_seconds, free_port, pinned, run_wrk, split_cores, start_burrow, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DURATION = os.environ.get("BENCH_DURATION", "4s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
# Each server on one core, wrk on the others (bench/common.py split_cores says why).
SERVER_CORES, CLIENT_CORES = split_cores()

BARE_APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    CREDENTIAL = {
        "id": "cr_00DfGQMwoxDxSQg0xzPH2R2eoD0",
        "uri": "http://127.0.0.1/credentials/cr_00DfGQMwoxDxSQg0xzPH2R2eoD0",
        "created_at": "2026-11-22T11:36:43Z", "description": "bench", "metadata": "",
        "token": None, "acl": ["bind:foo.example.com"], "owner_id": "usr_00DfGQKivZijnhAVX99ewmHamcl",
    }

    async def get(request):
        return JSONResponse(CREDENTIAL)

    app = Starlette(routes=[Route("/credentials/{id}", get)])
    """
)

POST_SCRIPT = textwrap.dedent(
    """
    wrk.method = "POST"
    wrk.body = '{"description":"bench","metadata":"","acl":["bind:*.example.com"]}'
    wrk.headers["Content-Type"] = "application/json"
    """
)


def edge_ports() -> list[str]:
    tcp = free_port()
    return [
        "--agent-addr",
        f"127.0.0.1:{free_port()}",
        "--http-addr",
        f"127.0.0.1:{free_port()}",
        "--tls-addr",
        f"127.0.0.1:{free_port()}",
        "--tcp-ports",
        f"{tcp}-{tcp}",
    ]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Ngrok-Version": "2"}


def create_credential(base_url: str, token: str) -> str:
    request = urllib.request.Request(
        f"{base_url}/credentials",
        method="POST",
        headers={**auth(token), "Content-Type": "application/json"},
        data=json.dumps({"description": "bench", "acl": ["bind:foo.example.com"]}).encode(),
    )
    return str(json.load(urllib.request.urlopen(request))["id"])


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "post.lua").write_text(POST_SCRIPT)
        bare_port = free_port()
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "bare_app:app",
                    "--port",
                    str(bare_port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--no-server-header",
                ],
                cwd=work,
                preexec_fn=pinned(SERVER_CORES),
            )
        )
        servers: dict[str, tuple[str, str, int]] = {}
        for name, options in (("on", ()), ("off", ("--no-access-log",))):
            port = free_port()
            token, server = start_burrow(
                work / f"log-{name}",
                port,
                "--no-edge",
                *options,
                log=work / f"log-{name}.log",
                cores=SERVER_CORES,
            )
            processes.append(server)
            wait_for_port(port)
            servers[name] = (f"http://127.0.0.1:{port}", token, server.pid)
        bare = f"http://127.0.0.1:{bare_port}"
        wait_for_port(bare_port)
        credential_ids = {name: create_credential(url, token) for name, (url, token, _) in servers.items()}

        def measure(
            pid: int, url: str, token: str | None = None, script: str | None = None
        ) -> dict[str, float]:
            before = cpu_seconds(pid)
            figures = run_wrk(url, DURATION, auth(token) if token else None, script, cores=CLIENT_CORES)
            # CPU per request moves far less with the machine's load than requests/s do.
            figures["cpu_us"] = (cpu_seconds(pid) - before) / figures["requests"] * 1e6
            return figures

        def get(name: str) -> dict[str, float]:
            url, token, pid = servers[name]
            return measure(pid, f"{url}/credentials/{credential_ids[name]}", token)

        url, token, pid = servers["on"]
        gets: dict[str, Callable[[], dict[str, float]]] = {
            "bare Starlette GET": lambda: measure(
                processes[0].pid, f"{bare}/credentials/cr_00DfGQMwoxDxSQg0xzPH2R2eoD0"
            ),
            "Burrow GET, access log on": lambda: get("on"),
            "Burrow GET, access log off": lambda: get("off"),
        }
        # Rounds, each measuring every server in turn (starting with a different one each
        # round): this VM's speed drifts by tens of percent within a minute, and a ratio
        # is only fair between measurements taken close together.
        rounds: list[dict[str, dict[str, float]]] = []
        names = list(gets)
        for number in range(ROUNDS):
            order = names[number % len(names) :] + names[: number % len(names)]
            rounds.append({name: gets[name]() for name in order})
        post = measure(pid, f"{url}/credentials", token, str(work / "post.lua"))
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; wrk -t1 -c32 -d{DURATION}, {ROUNDS} rounds"
        )
        print(f"{'':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7} {'CPU us/req':>10}")
        for number, results in enumerate(rounds, 1):
            baseline = results["bare Starlette GET"]["rps"]
            print(f"round {number}")
            for name in names:
                figures = results[name]
                print(
                    f"  {name:30} {figures['rps']:10.0f} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f} "
                    f"{figures['rps'] / baseline:7.2f} {figures['cpu_us']:10.1f}"
                )
        baseline = statistics.median(results["bare Starlette GET"]["rps"] for results in rounds)
        print(
            f"  {'Burrow POST, access log on':30} {post['rps']:10.0f} {post['p50_ms']:8.2f} "
            f"{post['p99_ms']:8.2f} {post['rps'] / baseline:7.2f} {post['cpu_us']:10.1f}"
        )

        def median_of(name: str, figure: str) -> float:
            return statistics.median(results[name][figure] for results in rounds)

        def best(name: str) -> float:
            return max(results[name]["rps"] for results in rounds)

        for name, target in (("on", 0.6), ("off", 0.5)):
            burrow = f"Burrow GET, access log {name}"
            ratio = best(burrow) / best("bare Starlette GET")
            ratios = [results[burrow]["rps"] / results["bare Starlette GET"]["rps"] for results in rounds]
            verdict = "met" if ratio >= target else "NOT met"
            print(
                f"authenticated GET, access log {name} / bare = {ratio:.2f}, best of {ROUNDS} rounds each "
                f"(>= {target}: {verdict}); each round's ratio: "
                f"{', '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}"
            )
        on, off = "Burrow GET, access log on", "Burrow GET, access log off"
        cost = median_of(on, "cpu_us") - median_of(off, "cpu_us")
        print(f"the access log's CPU cost per request (medians): {cost:.1f} us")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
