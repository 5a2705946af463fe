"""Tunnel throughput and request rate against OpenSSH's ``ssh -R`` and direct access.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/edge.py``). It starts a
small, fast HTTP service (asyncio + uvloop) that also serves the same responses over TLS
on a second port, a real ``burrow serve`` with a real ngrok agent (the PyPI ``ngrok`` SDK,
from .venvs/ngrok-sdk) forwarding an HTTP tunnel to that service, and OpenSSH's reverse
port forwarding (sshd and ``ssh -N -R`` on loopback, bench/ssh_forward.py) to the same
service, then measures in one run, through Burrow, through ssh and directly:

(a) a 256 MiB download with curl (best of 3); target: Burrow >= 0.8x ssh;
(b) small requests with wrk at 32 connections; target: Burrow >= 0.9x ssh.

Over plain HTTP both tunnels carry the service's plain HTTP. Over HTTPS, Burrow terminates
the client's TLS at its edge and the agent forwards plain HTTP; ssh can only carry bytes,
so its forwarded port leads to the service's own TLS port. Either way the bytes are
encrypted twice on the way: once by the client's TLS, once by the tunnel's own crypto.
The ratios against direct access, and the CPU every process spends, give the ceilings.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import cpu_seconds, free_port, need, run_wrk, start_burrow, wait_for_port
from ssh_forward import start_ssh_forwarding

from burrow.edge.certs import ensure_server_certificate

ROOT = Path(__file__).resolve().parent.parent
SDK_PYTHON = ROOT / ".venvs" / "ngrok-sdk" / "bin" / "python"
DOWNLOAD = int(os.environ.get("BENCH_DOWNLOAD_MIB", "256")) * 2**20  # tests run it smaller
DURATION = os.environ.get("BENCH_DURATION", "10s")
HOST = "bench.burrow.localhost"  # the http endpoint
HTTPS_HOST = "secure-bench.burrow.localhost"  # the https endpoint
# The name the local service's own TLS certificate carries (the ssh peer's HTTPS path).
SERVICE_TLS_NAME = "service.burrow.localhost"

# Usage: service.py PORT TLS_PORT CERT KEY. The same handler on both ports.
SERVICE = textwrap.dedent(
    """
    import asyncio, ssl, sys, uvloop
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
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main():
        port, tls_port, cert, key = sys.argv[1:5]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        plain = await asyncio.start_server(handle, "127.0.0.1", int(port), backlog=512)
        tls = await asyncio.start_server(handle, "127.0.0.1", int(tls_port), backlog=512, ssl=context)
        await asyncio.gather(plain.serve_forever(), tls.serve_forever())

    uvloop.run(main())
    """
)

# A typical Python web app as the local service: Starlette on uvicorn (uvloop, httptools),
# one process, the same app on a plain and a TLS port.
APP_SERVICE = textwrap.dedent(
    """
    import asyncio, sys, uvicorn, uvloop
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
    port, tls_port, cert, key = sys.argv[1:5]
    settings = dict(host="127.0.0.1", log_level="warning", access_log=False, http="httptools")
    servers = [
        uvicorn.Server(uvicorn.Config(app, port=int(port), **settings)),
        uvicorn.Server(
            uvicorn.Config(app, port=int(tls_port), ssl_certfile=cert, ssl_keyfile=key, **settings)
        ),
    ]

    async def main():
        await asyncio.gather(*(server.serve() for server in servers))

    uvloop.run(main())
    """
)

# Usage: agent.py TOKEN SERVER_ADDR CA UPSTREAM [SCHEME DOMAIN]...; prints one JSON line
# of the endpoints' URLs once all are bound, then runs until stdin closes.
AGENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from ngrok import ngrok

    async def main():
        token, server_addr, ca, upstream, *endpoints = sys.argv[1:]
        session = await (ngrok.SessionBuilder().authtoken(token).server_addr(server_addr)
                         .ca_cert(bytearray(open(ca, "rb").read())).connect())
        urls = []
        for scheme, domain in zip(endpoints[::2], endpoints[1::2]):
            endpoint = session.http_endpoint().scheme(scheme).domain(domain)
            listener = await endpoint.listen_and_forward(upstream)
            urls.append(listener.url())
        print(json.dumps(urls), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)

# wrk connects to the address its URL's name resolves to, and sends that name as SNI and
# Host. The names here are not in DNS: connect to loopback, keep the name.
LOOPBACK_LUA = textwrap.dedent(
    """
    wrk.resolve = function(host, service)
       wrk.addrs = wrk.lookup("127.0.0.1", service)
    end
    """
)


@dataclass(frozen=True)
class Target:
    """How clients reach the service one way: a URL, the Host header plain-HTTP routing
    needs, and for TLS the CA to verify against (the URL's name then resolves to loopback)."""

    url: str
    host: str | None = None
    ca: Path | None = None


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
            # The kernel's share (system time): the socket calls, TCP, and what the tunnel's
            # data path would still cost if its own code were free.
            **{f"{name} kernel": cpu_seconds(pid, kernel_only=True) for name, pid in pids.items()},
            client: times.children_user + times.children_system,
        }

    start = now()
    return lambda: {name: seconds - start[name] for name, seconds in now().items()}


def download_rate(curl: str, target: Target, pids: dict[str, int]) -> tuple[float, dict[str, float], float]:
    """Bytes per second (best of three); CPU seconds per GiB of each process; steal share."""
    command = [curl, "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}"]
    if target.host:
        command += ["-H", f"Host: {target.host}"]
    if target.ca:
        url = urlsplit(target.url)
        command += ["--cacert", str(target.ca), "--resolve", f"{url.hostname}:{url.port}:127.0.0.1"]
    command.append(f"{target.url}/bytes/{DOWNLOAD}")
    best = 0.0
    spent, stat = cpu_spent(pids, "curl"), cpu_totals()
    for _ in range(3):
        speed, size = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        if int(float(size)) != DOWNLOAD:
            raise RuntimeError(f"{target.url}: got {size} bytes")
        best = max(best, float(speed))
    steal = steal_fraction(stat, cpu_totals())
    gib = 3 * DOWNLOAD / 2**30
    return best, {name: seconds / gib for name, seconds in spent().items()}, steal


def request_rate(
    target: Target, pids: dict[str, int], loopback_lua: Path
) -> tuple[float, float, float, dict[str, float]]:
    """Requests per second, p50 and p99 in ms, and each process's CPU microseconds per request."""
    spent = cpu_spent(pids, "wrk")
    figures = run_wrk(
        f"{target.url}/",
        DURATION,
        {"Host": target.host} if target.host else None,
        str(loopback_lua) if target.ca else None,
    )
    requests = figures["rps"] * float(DURATION.rstrip("s"))
    costs = {name: seconds * 1e6 / requests for name, seconds in spent().items()}
    return figures["rps"], figures["p50_ms"], figures["p99_ms"], costs


@dataclass
class Figures:
    """One way to the service, measured: (a) and (b) and the CPU each process spent."""

    download: float  # bytes/s, best of 3
    download_cpu: dict[str, float]  # core-seconds per GiB
    steal: float
    rps: float
    p50_ms: float
    p99_ms: float
    request_cpu: dict[str, float]  # microseconds per request


def measure(curl: str, service_source: str, work: Path) -> dict[str, Figures]:
    """Both measurements for one local service: direct, and through a fresh Burrow tunnel and
    a fresh ssh -R forward over HTTP and over HTTPS."""
    processes: list[subprocess.Popen[Any]] = []
    try:
        (work / "service.py").write_text(service_source)
        (work / "agent.py").write_text(AGENT)
        (work / "loopback.lua").write_text(LOOPBACK_LUA)
        service_tls = ensure_server_certificate(work / "service-tls", [SERVICE_TLS_NAME])
        assert service_tls.ca_path is not None
        service_port, service_tls_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(work / "service.py"),
                    str(service_port),
                    str(service_tls_port),
                    str(service_tls.cert_path),
                    str(service_tls.key_path),
                ],
                text=True,
            )
        )
        data_dir = work / "data"
        api_port, agent_port, http_port, https_port, tls_port, tcp_port = (free_port() for _ in range(6))
        api_key, server = start_burrow(
            data_dir,
            api_port,
            "--agent-addr",
            f"127.0.0.1:{agent_port}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
            "--https-addr",
            f"127.0.0.1:{https_port}",
            "--tls-addr",
            f"127.0.0.1:{tls_port}",
            "--tcp-ports",
            f"{tcp_port}-{tcp_port}",
        )
        processes.append(server)
        for port in (service_port, service_tls_port, api_port, agent_port):
            wait_for_port(port)
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/credentials",
            method="POST",
            headers={
                "Authorization": f"Bearer {api_key}",
                "Ngrok-Version": "2",
                "Content-Type": "application/json",
            },
            data=json.dumps({"description": "bench", "acl": [f"bind:{HOST}", f"bind:{HTTPS_HOST}"]}).encode(),
        )
        token = json.load(urllib.request.urlopen(request))["token"]
        agent = subprocess.Popen(
            [
                str(SDK_PYTHON),
                str(work / "agent.py"),
                token,
                f"127.0.0.1:{agent_port}",
                str(data_dir / "ca.pem"),
                f"http://127.0.0.1:{service_port}",
                "HTTP",
                HOST,
                "HTTPS",
                HTTPS_HOST,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(agent)
        assert agent.stdout is not None
        _, https_url = json.loads(agent.stdout.readline())
        ssh_port, ssh_tls_port = free_port(), free_port()
        sshd, ssh = start_ssh_forwarding(
            work / "ssh", {ssh_port: service_port, ssh_tls_port: service_tls_port}
        )
        processes += [sshd, ssh]
        targets = {
            "direct": Target(f"http://127.0.0.1:{service_port}"),
            "burrow": Target(f"http://127.0.0.1:{http_port}", host=HOST),
            "ssh": Target(f"http://127.0.0.1:{ssh_port}"),
            "burrow https": Target(https_url, ca=data_dir / "ca.pem"),
            "ssh https": Target(f"https://{SERVICE_TLS_NAME}:{ssh_tls_port}", ca=service_tls.ca_path),
        }
        pids = {
            "service": processes[0].pid,
            "burrow": server.pid,
            "agent": agent.pid,
            "sshd": sshd.pid,
            "ssh": ssh.pid,
        }
        requests = {
            name: request_rate(target, pids, work / "loopback.lua") for name, target in targets.items()
        }
        downloads = {name: download_rate(curl, target, pids) for name, target in targets.items()}
        return {name: Figures(*downloads[name], *requests[name]) for name in targets}
    finally:
        for process in reversed(processes):
            if process.stdin:
                process.stdin.close()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        for leftover in ("data", "ssh", "service-tls"):
            shutil.rmtree(work / leftover, ignore_errors=True)


BURROW_SIDE = ("burrow", "agent", "service")
SSH_SIDE = ("sshd", "ssh", "service")


def cpu_line(costs: dict[str, float], names: tuple[str, ...], unit: str) -> str:
    return ", ".join(f"{name} {costs[name]:{unit}}" for name in names)


def report(r: dict[str, Figures]) -> None:
    cores = os.cpu_count() or 1
    direct, burrow = r["direct"], r["burrow"]
    pairs = (("HTTP", burrow, r["ssh"]), ("HTTPS", r["burrow https"], r["ssh https"]))
    print(
        f"  (a) {DOWNLOAD >> 20} MiB download: direct {direct.download / 2**20:7.1f} MiB/s, "
        f"tunnel {burrow.download / 2**20:7.1f} MiB/s, "
        f"ratio {burrow.download / direct.download:.2f} (issue 4 target >= 0.5)"
    )
    costs = burrow.download_cpu
    ceiling = cores / (costs["service"] + costs["agent"] + costs["curl"]) * 2**30
    print(
        "      CPU per GiB through the tunnel (core-seconds): "
        f"{cpu_line(costs, (*BURROW_SIDE, 'curl'), '.2f')}; "
        f"hypervisor steal during the downloads {max(f.steal for f in r.values()):.0%}"
    )
    print(
        f"      ceiling if Burrow cost nothing ({cores} cores / the others' CPU per GiB): "
        f"{ceiling / 2**20:.0f} MiB/s, ratio {ceiling / direct.download:.2f}"
    )
    for over, tunnel, ssh in pairs:
        print(
            f"      over {over:5}: Burrow {tunnel.download / 2**20:7.1f} MiB/s, "
            f"ssh -R {ssh.download / 2**20:7.1f} MiB/s; "
            f"Burrow / ssh, {over}: {tunnel.download / ssh.download:.2f} (target >= 0.8)"
        )
        print(
            f"        CPU per GiB: {cpu_line(tunnel.download_cpu, (*BURROW_SIDE, 'curl'), '.2f')}; "
            f"via ssh: {cpu_line(ssh.download_cpu, (*SSH_SIDE, 'curl'), '.2f')}"
        )
    print(
        f"  (b) small requests: direct {direct.rps:7.0f} req/s "
        f"(p50 {direct.p50_ms:.2f} ms, p99 {direct.p99_ms:.2f} ms), "
        f"tunnel {burrow.rps:7.0f} req/s "
        f"(p50 {burrow.p50_ms:.2f} ms, p99 {burrow.p99_ms:.2f} ms), "
        f"ratio {burrow.rps / direct.rps:.2f} (issue 4 target >= 0.3)"
    )
    costs = burrow.request_cpu
    ceiling = cores / (costs["service"] + costs["agent"] + costs["wrk"]) * 1e6
    print(
        "      CPU per tunneled request (microseconds): "
        f"{cpu_line(costs, (*BURROW_SIDE, 'wrk'), '.0f')}; "
        f"ceiling if Burrow cost nothing {ceiling:.0f} req/s, ratio {ceiling / direct.rps:.2f}"
    )
    for over, tunnel, ssh in pairs:
        print(
            f"      over {over:5}: Burrow {tunnel.rps:7.0f} req/s "
            f"(p50 {tunnel.p50_ms:.2f} ms, p99 {tunnel.p99_ms:.2f} ms), ssh -R {ssh.rps:7.0f} req/s "
            f"(p50 {ssh.p50_ms:.2f} ms, p99 {ssh.p99_ms:.2f} ms); "
            f"Burrow / ssh, {over}: {tunnel.rps / ssh.rps:.2f} (target >= 0.9)"
        )
        print(
            f"        CPU per request (µs): {cpu_line(tunnel.request_cpu, (*BURROW_SIDE, 'wrk'), '.0f')}; "
            f"via ssh: {cpu_line(ssh.request_cpu, (*SSH_SIDE, 'wrk'), '.0f')}"
        )
        kernel = tunnel.request_cpu["burrow kernel"]
        ssh_kernel = ssh.request_cpu["sshd kernel"] + ssh.request_cpu["ssh kernel"]
        ssh_total = sum(ssh.request_cpu[name] for name in (*SSH_SIDE, "wrk"))
        others = sum(tunnel.request_cpu[name] for name in ("agent", "service", "wrk"))
        print(
            f"        in the kernel (µs): burrow {kernel:.0f} of its {tunnel.request_cpu['burrow']:.0f}; "
            f"sshd + ssh {ssh_kernel:.0f}; Burrow's budget for 0.9x ssh with these others: "
            f"{ssh_total / 0.9 - others:.0f}"
        )


def ssh_version() -> str:
    return subprocess.run(
        [need("ssh", "openssh-client"), "-V"], capture_output=True, text=True, check=True
    ).stderr.strip()


def main() -> None:
    if not SDK_PYTHON.exists():
        raise SystemExit("run 'make test' first: it builds .venvs/ngrok-sdk with the agent SDK")
    curl = need("curl")
    work = Path(tempfile.mkdtemp(prefix="burrow-edge-bench-"))
    try:
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; wrk -t1 -c32 -d{DURATION}; curl, best of 3; "
            f"{ssh_version()}, ssh -R -c aes128-gcm@openssh.com"
        )
        for name, source in (("raw uvloop responder", SERVICE), ("Starlette app on uvicorn", APP_SERVICE)):
            results = measure(curl, source, work)
            print(f"local service: {name}")
            report(results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
