"""Tunnel throughput and request rate against the same local service reached directly.

Not a test: run ``make bench-edge`` (or ``.venv/bin/python bench/edge.py``). It starts a
small, fast HTTP service (asyncio + uvloop), a real ``burrow serve`` and a real ngrok
agent (the PyPI ``ngrok`` SDK, from .venvs/ngrok-sdk) forwarding an HTTP tunnel to that
service, then measures in one run:

(a) a 256 MiB download with curl, through the tunnel and directly; target ratio >= 0.5;
(b) small requests with wrk at 32 connections, through the tunnel and directly;
    target ratio >= 0.3.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import cpu_seconds, free_port, need, run_wrk, start_burrow, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
SDK_PYTHON = ROOT / ".venvs" / "ngrok-sdk" / "bin" / "python"
DOWNLOAD = 256 * 1024 * 1024
DURATION = os.environ.get("BENCH_DURATION", "10s")
HOST = "bench.burrow.localhost"

SERVICE = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    BLOCK = bytes(range(256)) * 4096
    SMALL = b"HTTP/1.1 200 OK\\r\\nContent-Length: 13\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello, burrow"

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\\r\\n\\r\\n")
                path = head.split(b" ", 2)[1]
                if path.startswith(b"/bytes/"):
                    size = int(path[7:])
                    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % size)
                    while size:
                        chunk = BLOCK[: min(size, len(BLOCK))]
                        writer.write(chunk)
                        size -= len(chunk)
                        await writer.drain()
                else:
                    writer.write(SMALL)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=512)
        async with server:
            await server.serve_forever()

    uvloop.run(main())
    """
)

# A typical Python web app as the local service: Starlette on uvicorn, one worker.
APP_SERVICE = textwrap.dedent(
    """
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, StreamingResponse
    from starlette.routing import Route
    BLOCK = bytes(range(256)) * 4096

    async def small(request):
        return PlainTextResponse("hello, burrow")

    async def data(request):
        size = int(request.path_params["size"])

        async def body():
            left = size
            while left:
                chunk = BLOCK[: min(left, len(BLOCK))]
                left -= len(chunk)
                yield chunk

        return StreamingResponse(body(), headers={"Content-Length": str(size)})

    app = Starlette(routes=[Route("/", small), Route("/bytes/{size}", data)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
    """
)

AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from ngrok import ngrok

    async def main():
        token, server_addr, ca, domain, upstream = sys.argv[1:6]
        session = await (ngrok.SessionBuilder().authtoken(token).server_addr(server_addr)
                         .ca_cert(bytearray(open(ca, "rb").read())).connect())
        listener = await session.http_endpoint().domain(domain).listen_and_forward(upstream)
        print(listener.url(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


def steal_fraction(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor took from this VM between two /proc/stat samples."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return spent[7] / max(1, sum(spent))


def cpu_totals() -> list[int]:
    return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def cpu_spent(pids: dict[str, int], client: str) -> Callable[[], dict[str, float]]:
    """Start counting CPU seconds; the returned function gives each process's share so far,
    the processes in ``pids`` and, as ``client``, the children this script ran and waited for."""

    def now() -> dict[str, float]:
        times = os.times()
        return {
            **{name: cpu_seconds(pid) for name, pid in pids.items()},
            client: times.children_user + times.children_system,
        }

    start = now()
    return lambda: {name: seconds - start[name] for name, seconds in now().items()}


def download_rate(
    curl: str, url: str, host: str | None, pids: dict[str, int]
) -> tuple[float, dict[str, float], float]:
    """Bytes per second (best of three); CPU seconds per GiB of each process; steal share."""
    command = [curl, "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}", url]
    if host:
        command[1:1] = ["-H", f"Host: {host}"]
    best = 0.0
    spent, stat = cpu_spent(pids, "curl"), cpu_totals()
    for _ in range(3):
        speed, size = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        if int(float(size)) != DOWNLOAD:
            raise RuntimeError(f"{url}: got {size} bytes")
        best = max(best, float(speed))
    steal = steal_fraction(stat, cpu_totals())
    gib = 3 * DOWNLOAD / 2**30
    return best, {name: seconds / gib for name, seconds in spent().items()}, steal


def request_rate(
    url: str, host: str | None, pids: dict[str, int]
) -> tuple[float, float, float, dict[str, float]]:
    """Requests per second, p50 and p99 in ms, and each process's CPU microseconds per request."""
    spent = cpu_spent(pids, "wrk")
    figures = run_wrk(url, DURATION, {"Host": host} if host else None)
    requests = figures["rps"] * float(DURATION.rstrip("s"))
    costs = {name: seconds * 1e6 / requests for name, seconds in spent().items()}
    return figures["rps"], figures["p50_ms"], figures["p99_ms"], costs


def measure(curl: str, service_source: str, work: Path) -> dict[str, float]:
    """Both measurements for one local service, direct and through a fresh tunnel."""
    processes: list[subprocess.Popen[Any]] = []
    try:
        (work / "service.py").write_text(service_source)
        (work / "agent.py").write_text(AGENT)
        service_port = free_port()
        processes.append(
            subprocess.Popen([sys.executable, str(work / "service.py"), str(service_port)], text=True)
        )
        data_dir = work / "data"
        api_port, agent_port, http_port, tls_port, tcp_port = (free_port() for _ in range(5))
        api_key, server = start_burrow(
            data_dir,
            api_port,
            "--agent-addr",
            f"127.0.0.1:{agent_port}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
            "--tls-addr",
            f"127.0.0.1:{tls_port}",
            "--tcp-ports",
            f"{tcp_port}-{tcp_port}",
        )
        processes.append(server)
        for port in (service_port, api_port, agent_port):
            wait_for_port(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/credentials",
            method="POST",
            headers={
                "Authorization": f"Bearer {api_key}",
                "Ngrok-Version": "2",
                "Content-Type": "application/json",
            },
            data=json.dumps({"description": "bench", "acl": [f"bind:{HOST}"]}).encode(),
        )
        token = json.load(urllib.request.urlopen(request))["token"]
        agent = subprocess.Popen(
            [
                str(SDK_PYTHON),
                str(work / "agent.py"),
                token,
                f"127.0.0.1:{agent_port}",
                str(data_dir / "ca.pem"),
                HOST,
                f"http://127.0.0.1:{service_port}",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(agent)
        assert agent.stdout is not None
        agent.stdout.readline()
        direct, tunnel = f"http://127.0.0.1:{service_port}", f"http://127.0.0.1:{http_port}"
        pids = {"service": processes[0].pid, "burrow": processes[1].pid, "agent": agent.pid}
        small_direct, small_tunnel = (
            request_rate(f"{direct}/", None, pids),
            request_rate(f"{tunnel}/", HOST, pids),
        )
        download_direct, _, steal_direct = download_rate(curl, f"{direct}/bytes/{DOWNLOAD}", None, pids)
        download_tunnel, costs, steal_tunnel = download_rate(curl, f"{tunnel}/bytes/{DOWNLOAD}", HOST, pids)
        return {
            "download_direct": download_direct,
            "download_tunnel": download_tunnel,
            "steal": max(steal_direct, steal_tunnel),
            **{f"cost_{name}": cost for name, cost in costs.items()},
            **{f"request_{name}": cost for name, cost in small_tunnel[3].items()},
            "small_direct": small_direct[0],
            "small_direct_p50": small_direct[1],
            "small_direct_p99": small_direct[2],
            "small_tunnel": small_tunnel[0],
            "small_tunnel_p50": small_tunnel[1],
            "small_tunnel_p99": small_tunnel[2],
        }
    finally:
        for process in reversed(processes):
            if process.stdin:
                process.stdin.close()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(work / "data", ignore_errors=True)


def main() -> None:
    if not SDK_PYTHON.exists():
        raise SystemExit("run 'make test' first: it builds .venvs/ngrok-sdk with the agent SDK")
    curl = need("curl")
    work = Path(tempfile.mkdtemp(prefix="burrow-edge-bench-"))
    try:
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; wrk -t1 -c32 -d{DURATION}; curl, best of 3"
        )
        for name, source in (("raw uvloop responder", SERVICE), ("Starlette app on uvicorn", APP_SERVICE)):
            r = measure(curl, source, work)
            print(f"local service: {name}")
            print(
                f"  (a) 256 MiB download: direct {r['download_direct'] / 2**20:7.1f} MiB/s, "
                f"tunnel {r['download_tunnel'] / 2**20:7.1f} MiB/s, "
                f"ratio {r['download_tunnel'] / r['download_direct']:.2f} (target >= 0.5)"
            )
            others = r["cost_service"] + r["cost_agent"] + r["cost_curl"]
            ceiling = (os.cpu_count() or 1) / others * 2**30
            print(
                "      CPU per GiB through the tunnel (core-seconds): "
                f"burrow {r['cost_burrow']:.2f}, agent {r['cost_agent']:.2f}, "
                f"service {r['cost_service']:.2f}, curl {r['cost_curl']:.2f}; "
                f"hypervisor steal during the downloads {r['steal']:.0%}"
            )
            print(
                f"      ceiling if Burrow cost nothing ({os.cpu_count()} cores / the others' CPU per GiB): "
                f"{ceiling / 2**20:.0f} MiB/s, ratio {ceiling / r['download_direct']:.2f}"
            )
            print(
                f"  (b) small requests: direct {r['small_direct']:7.0f} req/s "
                f"(p50 {r['small_direct_p50']:.2f} ms, p99 {r['small_direct_p99']:.2f} ms), "
                f"tunnel {r['small_tunnel']:7.0f} req/s "
                f"(p50 {r['small_tunnel_p50']:.2f} ms, p99 {r['small_tunnel_p99']:.2f} ms), "
                f"ratio {r['small_tunnel'] / r['small_direct']:.2f} (target >= 0.3)"
            )
            others = r["request_service"] + r["request_agent"] + r["request_wrk"]
            ceiling = (os.cpu_count() or 1) / others * 1e6
            print(
                "      CPU per tunneled request (microseconds): "
                f"burrow {r['request_burrow']:.0f}, agent {r['request_agent']:.0f}, "
                f"service {r['request_service']:.0f}, wrk {r['request_wrk']:.0f}; "
                f"ceiling if Burrow cost nothing {ceiling:.0f} req/s, ratio {ceiling / r['small_direct']:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
