"""What both benchmarks need: free ports, tools from Debian, and wrk's figures."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent


def start_burrow(
    data_dir: Path, api_port: int, *options: str, log: Path | None = None, cores: set[int] | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """``burrow init`` then ``burrow serve`` (default settings plus ``options``) on
    ``data_dir``: the admin's API key and the server process. Its log (stderr) goes to the
    file ``log``, as a service's would, or nowhere. The caller waits for its ports and
    stops it."""
    api_key = subprocess.run(
        [str(BIN / "burrow"), "init", "--data-dir", str(data_dir), "--admin-email", "bench@localhost"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(log, "ab") if log else open(os.devnull, "wb") as stderr:
        server = subprocess.Popen(
            [
                str(BIN / "burrow"),
                "serve",
                "--data-dir",
                str(data_dir),
                "--api-addr",
                f"127.0.0.1:{api_port}",
                *options,
                # Limits a benchmark never reaches, so their cost is measured but they never answer 429.
                *("--api-rate-limit", "1000000000/minute", "--api-address-rate-limit", "1000000000/minute"),
                *("--agent-session-limit", "1000000000/minute"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=pinned(cores),
        )
    return api_key, server


def cpu_seconds(pid: int, kernel_only: bool = False) -> float:
    """User + system CPU time so far (system time alone with ``kernel_only``) of a process,
    all its threads and its live descendants (sshd serves each connection in a child
    process), from Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])
    total = ticks / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):  # it exited since
                total += cpu_seconds(int(child), kernel_only)
    return total


def free_port() -> int:
    """A loopback port free now, from below the kernel's ephemeral range: a port the kernel
    hands out (bind to 0) may be given to another process's outgoing connection before the
    server started with it binds it ("address already in use")."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``port`` accepts connections; fail at once if ``process`` (the server that
    should open it) has exited."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before port {port} opened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def need(tool: str, package: str | None = None) -> str:
    """The tool's absolute path (sbin included), installing its Debian package (by default
    the tool's own name) if it is missing."""
    path = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"
    found = shutil.which(tool, path=path)
    if found:
        return found
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package or tool],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which(tool, path=path)
    if not found:
        raise RuntimeError(f"{package or tool} installed, but {tool} is still not on the PATH")
    return found


def pinned(cores: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that runs the child, and every thread it starts, on ``cores``."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


def split_cores() -> tuple[set[int], set[int]]:
    """The cores for one server process and for its load generator: on two cores or more,
    the first core and the others. Left to the scheduler, a server and wrk on two cores
    sometimes share one and sometimes not, which moved one server's throughput and CPU
    per request by 30-70% from run to run (bench/api.py, 2026-11-30)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return set(cores), set(cores)
    return {cores[0]}, set(cores[1:])


def run_wrk(
    url: str,
    duration: str,
    headers: dict[str, str] | None = None,
    script: str | None = None,
    connections: int = 32,
    cores: set[int] | None = None,
) -> dict[str, float]:
    """Requests/s and p50/p99 latency in ms; any error response or socket error fails the run.
    ``cores``: where wrk runs (anywhere by default)."""
    command = [need("wrk"), "-t1", f"-c{connections}", f"-d{duration}", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, preexec_fn=pinned(cores)
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"{url}: errors during the run\n{output}")

    def percentile(name: str) -> float:
        value, unit = re.search(rf"\s{name}%\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return {"rps": rate, "requests": requests, "p50_ms": percentile("50"), "p99_ms": percentile("99")}
