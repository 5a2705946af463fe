"""What the abuse tests share: attackers in other processes, latency probes, the file limit."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import socket
import ssl
import statistics
import time
from collections.abc import Callable

import httpx
import pytest

MiB = 1024 * 1024


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


def read_until_closed(sock: socket.socket, limit: float = 10) -> bytes:
    """Everything the server sends until it closes (a reset, or a TLS error, counts as closing)."""
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def attack_with_huge_heads(
    addr: tuple[str, int],
    head: bytes,
    tls: tuple[str, str] | None,
    source: str,
    results: multiprocessing.Queue[tuple[float, bytes]],
) -> None:
    """Send ``head`` then 96 MiB of one header's value, one connection after another,
    reporting how long each took to be refused and what it was answered. ``tls`` is
    (CA file, server name) to send it over TLS."""
    # The attackers share this machine's cores with the server; niced, they take what the
    # server leaves (an attacker elsewhere costs the server's machine nothing but its traffic).
    os.nice(19)
    context = ssl.create_default_context(cafile=tls[0]) if tls else None
    chunk = b"a" * MiB
    while True:
        raw = socket.create_connection(addr, timeout=10, source_address=(source, 0))
        started = time.monotonic()
        sock = context.wrap_socket(raw, server_hostname=tls[1]) if context and tls else raw
        with sock:
            with contextlib.suppress(OSError):
                sock.sendall(head)
                for _ in range(96):
                    sock.sendall(chunk)
            answer = read_until_closed(sock)
            results.put((time.monotonic() - started, answer))


def start_attackers(
    target: Callable[..., None], args: tuple[object, ...], sources: list[str]
) -> tuple[list[multiprocessing.Process], multiprocessing.Queue[tuple[float, bytes]]]:
    """``target(*args, source, results)`` in one process per source address, so that the
    attackers do not slow the process that measures."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[tuple[float, bytes]] = context.Queue()
    attackers = [context.Process(target=target, args=(*args, source, results)) for source in sources]
    for attacker in attackers:
        attacker.start()
    return list(attackers), results


def stop_attackers(attackers: list[multiprocessing.Process]) -> None:
    for attacker in attackers:
        attacker.kill()
        attacker.join()


class Probe:
    """A steady stream of requests, alternating ``/healthz`` on the API and a GET through a
    tunnel (each on a keep-alive connection of its own), one every 10 ms; the latencies."""

    def __init__(self, api_url: str, public_addr: str, tunnel_host: str) -> None:
        self.api = httpx.Client(base_url=api_url, timeout=10)
        self.tunnel = httpx.Client(
            base_url=f"http://{public_addr}", headers={"Host": tunnel_host}, timeout=10
        )
        self.healthz: list[float] = []
        self.through_tunnel: list[float] = []

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()
        self.tunnel.close()

    def run(self, samples: int, until: Callable[[], bool] = lambda: True) -> tuple[float, float]:
        """At least ``samples`` of each, and until ``until()``; their p99s (healthz, tunnel)."""
        self.healthz, self.through_tunnel = [], []
        self._one(self.api, "/healthz", [])  # the connections are open before timing starts
        self._one(self.tunnel, "/warm", [])
        while len(self.through_tunnel) < samples or not until():
            self._one(self.api, "/healthz", self.healthz)
            self._one(self.tunnel, "/probe", self.through_tunnel)
        return p99(self.healthz), p99(self.through_tunnel)

    @staticmethod
    def _one(client: httpx.Client, path: str, latencies: list[float]) -> None:
        started = time.perf_counter()
        response = client.get(path)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        time.sleep(0.005)


def ensure_file_limit(needed: int) -> None:
    """Raise this process's soft open-file limit to ``needed`` (fail, not skip, if it cannot)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"this test opens {needed} sockets; the hard open-file limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
