"""No client can stall or starve the public listeners or a tunnel behind them (docs/limits.md).

Against a real ``burrow serve`` with a live SDK tunnel, on loopback; any 127.x.y.z address is
this machine, which lets a test be many clients."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from burrow.edge.agent import MAX_STREAMS_PER_AGENT
from tests.abuse import (
    Probe,
    attack_with_huge_heads,
    ensure_file_limit,
    p99,
    read_until_closed,
    start_attackers,
    stop_attackers,
)
from tests.edge.conftest import Agent
from tests.edge.test_public import address
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer, free_port

pytestmark = pytest.mark.e2e

TIMEOUTS = 5.0  # the attack server's head, body and keep-alive timeouts: long enough to measure within
TIMEOUT = 1.0  # every timeout of the impatient server


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, *options: str) -> BurrowServer:
    metrics = f"127.0.0.1:{free_port()}"
    server = BurrowServer(tmp_path_factory.mktemp(name) / "data").start("--metrics-addr", metrics, *options)
    server.metrics_addr = metrics  # type: ignore[attr-defined]
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    """Default limits but the timeouts, shortened so that a test outlasts them."""
    timeouts = (
        "--head-timeout",
        str(TIMEOUTS),
        "--body-timeout",
        str(TIMEOUTS),
        "--idle-timeout",
        str(TIMEOUTS),
    )
    server = _start(tmp_path_factory, "public-abuse", *timeouts)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = _start(
        tmp_path_factory,
        "public-impatient",
        *("--head-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT), "--idle-timeout", str(TIMEOUT)),
        *("--tls-handshake-timeout", str(TIMEOUT)),
    )
    yield server
    server.stop()


def streams_open(server: BurrowServer) -> int:
    """Streams open to the server's agents, from /metrics."""
    text = httpx.get(f"http://{server.metrics_addr}/metrics", timeout=10).text  # type: ignore[attr-defined]
    for line in text.splitlines():
        if line.startswith("burrow_agent_streams_open "):
            return int(float(line.split()[1]))
    raise AssertionError("no burrow_agent_streams_open in /metrics")


def serve_tunnel(
    server: BurrowServer, start_agent: Callable[..., Agent], host: str, https: bool = False
) -> Agent:
    endpoints = [{"name": "web", "kind": "http", "domain": host}]
    if https:
        endpoints.append({"name": "secure", "kind": "http", "scheme": "https", "domain": host})
    agent = start_agent(server, credential(server, [])["token"], endpoints)
    assert "url" in agent.ready["ready"]["web"], agent.ready
    return agent


# A 96 MiB head ------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["http", "https"])
def test_a_96_mib_head_is_refused_within_a_second_while_the_tunnel_stays_fast(
    server: BurrowServer, start_agent: Callable[..., Agent], listener: str
) -> None:
    host = f"victim-{listener}.burrow.localhost"
    serve_tunnel(server, start_agent, host, https=listener == "https")
    with Probe(server.base_url, server.http_addr, host) as probe:
        # What the machine gives without an attack: on a loaded one (the suite shares two
        # cores with other runs), that can be more than the 100 ms the issue asks for.
        quiet_healthz, quiet_tunnel = probe.run(samples=200)
        head = f"GET / HTTP/1.1\r\nHost: {host}\r\nX-Big: ".encode()
        target = address(server.https_addr if listener == "https" else server.http_addr)
        tls = (str(server.ca_path), host) if listener == "https" else None
        sources = [f"127.0.4.{n}" for n in range(1, 5)]
        attackers, results = start_attackers(attack_with_huge_heads, (target, head, tls), sources)
        try:
            healthz, tunnel = probe.run(samples=200, until=lambda: results.qsize() >= 8)
        finally:
            stop_attackers(attackers)
    refusals = [results.get(timeout=5) for _ in range(8)]
    print(
        f"\n{listener}: p99 healthz {quiet_healthz * 1000:.1f} -> {healthz * 1000:.1f} ms, "
        f"through the tunnel {quiet_tunnel * 1000:.1f} -> {tunnel * 1000:.1f} ms; "
        f"refused within {max(elapsed for elapsed, _ in refusals) * 1000:.0f} ms"
    )
    assert max(elapsed for elapsed, _ in refusals) < 1.0, refusals
    # The bound is 100 ms; on a machine slower than that without any attack, the
    # attack may cost at most a small factor of what it gives when quiet.
    assert healthz < max(0.1, 3 * quiet_healthz), (healthz, quiet_healthz)
    assert tunnel < max(0.1, 3 * quiet_tunnel), (tunnel, quiet_tunnel)
    # The answer leaves before the server hangs up; a client still sending may see only the reset.
    answers = [answer for _, answer in refusals if answer]
    assert answers, "no attacker received the 431"
    assert all(answer.startswith(b"HTTP/1.1 431 ") and b"ERR_NGROK_90431" in answer for answer in answers)


# Connections that withhold what they announced -------------------------------------------


def _connect(addr: tuple[str, int], source: str, send: bytes) -> socket.socket:
    sock = socket.create_connection(addr, timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x00" * 8)
    if send:
        sock.sendall(send)
    return sock


def _closed_by(socks: list[socket.socket], deadline: float) -> list[float]:
    """When each socket was closed by the server (EOF or reset), waiting until ``deadline``."""
    open_socks = {sock.fileno(): sock for sock in socks}
    closed_at: dict[int, float] = {}
    poller = select.poll()
    for fd in open_socks:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while open_socks and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            with contextlib.suppress(OSError):
                if open_socks[fd].recv(65536):
                    continue  # an answer: the close follows
            closed_at[fd] = time.monotonic()
            poller.unregister(fd)
            del open_socks[fd]
    assert not open_socks, f"{len(open_socks)} connections still open"
    return [closed_at[sock.fileno()] for sock in socks]


def _hold_after_one_request(sock: socket.socket, host: str) -> socket.socket:
    """One request answered, then nothing: the connection keeps its stream between requests
    (unless it got a 503: the agent's streams were all taken by addresses holding as many)."""
    sock.sendall(f"GET /hold HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 503 ")), head
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return sock


@pytest.mark.parametrize("holding", ["withheld-body", "kept-alive"])
def test_500_connections_holding_streams_do_not_starve_the_tunnel(
    server: BurrowServer, start_agent: Callable[..., Agent], holding: str
) -> None:
    ensure_file_limit(4096)
    host = f"{holding}.burrow.localhost"
    serve_tunnel(server, start_agent, host)
    http = address(server.http_addr)
    before = streams_open(server)
    # 500 connections from 10 addresses (each under the per-address cap of 64), so that
    # together they could take every stream of the agent: requests announcing a body that
    # never comes, or connections idle after one request (a kept-alive connection keeps its
    # stream for the next request) ...
    head = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode()
    if holding == "withheld-body":
        holders = [_connect(http, f"127.0.5.{n // 50 + 1}", head) for n in range(500)]
    else:
        holders = [
            _hold_after_one_request(_connect(http, f"127.0.5.{n // 50 + 1}", b""), host) for n in range(500)
        ]
    opened = time.monotonic()
    # ... and 100 connections that send nothing, or half a head, and so hold no stream.
    silent = [_connect(http, f"127.0.6.{n // 50 + 1}", head[: n % 2 * 20]) for n in range(100)]
    silent_since = time.monotonic()
    try:
        deadline = time.monotonic() + 10  # the server takes its time on a loaded machine
        while (taken := streams_open(server) - before) < MAX_STREAMS_PER_AGENT - before:
            assert time.monotonic() < deadline, f"the holders took only {taken} streams"
            time.sleep(0.05)
        # Legitimate requests through the same tunnel, each on a new connection (needing a
        # stream of its own), while the holders wait out their timeouts.
        request = f"GET /legit HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        latencies, statuses = [], []
        window = time.monotonic() + 1.5
        while time.monotonic() < window or len(statuses) < 20:
            began = time.perf_counter()
            with _connect(http, "127.0.0.1", request) as sock:
                answer = read_until_closed(sock)
            latencies.append(time.perf_counter() - began)
            statuses.append(int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else 0)
        # The holders still had their streams (but the few taken back for these requests):
        # the requests went during the attack.
        assert streams_open(server) - before > 400
        served = statuses.count(200) / len(statuses)
        print(
            f"\n{holding}: {statuses.count(200)} of {len(statuses)} legitimate requests served, "
            f"p99 {p99(latencies) * 1000:.1f} ms"
        )
        assert served >= 0.95, statuses
        # Served at once, not after a holder's timeout (5 s): 5-10 ms on a quiet machine,
        # the rest of the margin is for a loaded one.
        assert p99(latencies) < 2
        # The holders are closed by the body (or keep-alive) timeout, the silent by the head
        # timeout, none before (a timeout is checked every quarter of itself; the rest of the
        # margin is for a loaded machine) ...
        holders_closed = _closed_by(holders, opened + TIMEOUTS + 5)
        silent_closed = _closed_by(silent, silent_since + TIMEOUTS + 5)
        assert min(silent_closed) - silent_since > TIMEOUTS * 0.9
        assert max(holders_closed) - opened < TIMEOUTS + 3
        assert max(silent_closed) - silent_since < TIMEOUTS + 3
        # ... and the agent has its streams back.
        deadline = time.monotonic() + 2
        while (left := streams_open(server)) > before:
            assert time.monotonic() < deadline, f"{left - before} streams were not given back"
            time.sleep(0.05)
    finally:
        for sock in holders + silent:
            sock.close()


# Slow, idle and unfinished connections: closed by their timeouts -------------------------


def _open_connections(server: BurrowServer, listener: str) -> int:
    text = httpx.get(f"http://{server.metrics_addr}/metrics", timeout=10).text  # type: ignore[attr-defined]
    prefix = f'burrow_public_connections_open{{listener="{listener}"}} '
    return next(int(float(line[len(prefix) :])) for line in text.splitlines() if line.startswith(prefix))


def _timed(sock: socket.socket, pieces: list[bytes], pause: float = 0.0) -> tuple[bytes, float]:
    """Send ``pieces`` (pausing between them, for as long as the server listens), then read
    until the server closes; what came back, and when the server closed (from now)."""
    started = time.monotonic()
    for piece in pieces:
        try:
            sock.sendall(piece)
        except OSError:
            break
        time.sleep(pause)
    return read_until_closed(sock, TIMEOUT + 5), time.monotonic() - started


def _tls(sock: socket.socket, server: BurrowServer, host: str) -> socket.socket:
    return ssl.create_default_context(cafile=str(server.ca_path)).wrap_socket(sock, server_hostname=host)


def test_slow_idle_and_unfinished_connections_are_closed_by_their_timeouts(
    impatient: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    host = "slow.burrow.localhost"
    serve_tunnel(impatient, start_agent, host, https=True)
    http, https = address(impatient.http_addr), address(impatient.https_addr)
    tls = address(impatient.tls_addr)
    head = f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode() + b"".join(b"X-%d: y\r\n" % n for n in range(100))
    post = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n".encode()
    get = f"GET /kept HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def secure(source: str) -> socket.socket:
        return _tls(_connect(https, source, b""), impatient, host)

    trickle = [head[i : i + 1] for i in range(len(head))]  # a byte every 20 ms, for 30 s
    cases: dict[str, Callable[[], tuple[bytes, float]]] = {
        # On the HTTP listener: nothing said, a head trickled byte by byte (the head timeout
        # counts from the connection, not from the last byte), a head without its body, a
        # body cut short, and a connection kept alive after its answer.
        "http silent": lambda: _timed(_connect(http, "127.0.7.1", b""), []),
        "http slowloris": lambda: _timed(_connect(http, "127.0.7.2", b""), trickle, 0.02),
        "http head only": lambda: _timed(_connect(http, "127.0.7.3", b""), [post]),
        "http short body": lambda: _timed(_connect(http, "127.0.7.4", b""), [post + b"abc"]),
        "http kept alive": lambda: _timed(_connect(http, "127.0.7.5", b""), [get]),
        # HTTPS: no ClientHello, half of one, and after the handshake as over HTTP.
        "https no hello": lambda: _timed(_connect(https, "127.0.7.6", b""), []),
        "https half a hello": lambda: _timed(_connect(https, "127.0.7.7", b"\x16\x03\x01\x02\x00\x01"), []),
        "https silent": lambda: _timed(secure("127.0.7.8"), []),
        "https slowloris": lambda: _timed(secure("127.0.7.9"), trickle, 0.02),
        "https head only": lambda: _timed(secure("127.0.7.10"), [post]),
        # The TLS listener: a connection that never says which name it wants.
        "tls silent": lambda: _timed(_connect(tls, "127.0.7.11", b""), []),
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        results = dict(zip(cases, pool.map(lambda case: case(), cases.values()), strict=True))
    for case, (answer, elapsed) in results.items():
        assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1, (case, elapsed, answer[:100])
        if "kept alive" in case:
            assert answer.startswith(b"HTTP/1.1 200 "), (case, answer[:100])
        else:
            assert answer == b"", (case, answer[:100])  # nothing asked in full, nothing answered
    # Closed means closed: an HTTPS connection does not linger waiting for the client's
    # close_notify (a TLS close would wait 30 s), so its slot is free at once.
    for listener in ("http", "https", "tls"):
        assert _open_connections(impatient, listener) == 0, listener


def test_a_slow_body_that_keeps_coming_is_not_cut_off(
    impatient: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    host = "steady.burrow.localhost"
    serve_tunnel(impatient, start_agent, host)
    body = b"steady " * 8
    head = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    pieces = [head] + [body[i : i + 8] for i in range(0, len(body), 8)]
    with _connect(address(impatient.http_addr), "127.0.7.20", b"") as sock:
        answer, elapsed = _timed(sock, pieces, TIMEOUT / 3)
    assert elapsed > TIMEOUT * 2  # longer than the body timeout in all, never silent that long
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b'"received": %d' % len(body) in answer


def test_500_connections_from_one_address_get_no_more_than_its_share(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    ensure_file_limit(4096)
    host = "one-address.burrow.localhost"
    serve_tunnel(server, start_agent, host)
    http = address(server.http_addr)
    head = f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode()
    holders = [_connect(http, "127.0.8.1", head) for _ in range(500)]
    try:
        request = f"GET /legit HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        statuses = []
        for _ in range(20):
            with _connect(http, "127.0.0.1", request) as sock:
                statuses.append(read_until_closed(sock)[:12])
        assert statuses == [b"HTTP/1.1 200"] * 20
        # The address's connections past its cap of 64 were refused at once with a 503 page.
        refused = 0
        for sock in holders[64:]:
            sock.settimeout(5)
            refused += read_until_closed(sock).startswith(b"HTTP/1.1 503 ")
        assert refused == 436
    finally:
        for sock in holders:
            sock.close()
