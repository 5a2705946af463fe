"""No client can stall or starve the API: head limits, timeouts, connection caps (docs/limits.md)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.abuse import Probe, attack_with_huge_heads, start_attackers, stop_attackers
from tests.edge import conftest as edge_conftest
from tests.edge.conftest import Agent
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e  # every test here runs `burrow serve`

start_agent = edge_conftest.start_agent  # the agent SDK fixture of tests/edge, for the tunnel

TIMEOUT = 0.5  # the head, body and keep-alive timeouts of the fast-timeout server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("abuse") / "data").start("--no-access-log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("impatient") / "data").start(
        "--no-access-log",
        "--api-head-timeout",
        str(TIMEOUT),
        "--api-body-timeout",
        str(TIMEOUT),
        "--api-keepalive-timeout",
        str(TIMEOUT),
    )
    yield server
    server.stop()


def connect(server: BurrowServer, source: str = "127.0.0.1") -> socket.socket:
    """A connection to the API from ``source`` (any 127.x.y.z address is this machine)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x00" * 8)
    return sock


def read_all(sock: socket.socket, limit: float = 10) -> bytes:
    """Everything the server sends until it closes (a reset counts as closing)."""
    sock.settimeout(limit)
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def ngrok_error(response: bytes, status: int) -> dict[str, object]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), response[:200]
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)
    assert error["status_code"] == status
    assert str(error["error_code"]).startswith("ERR_NGROK_9")
    assert error["msg"] and "operation_id" in error["details"]
    return dict(error)


def exchange(server: BurrowServer, request: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(request)
        return read_all(sock)


def test_a_96_mib_head_is_refused_within_a_second_while_healthz_and_the_tunnel_stay_fast(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    host = "api-victim.burrow.localhost"
    agent = start_agent(
        server, credential(server, [])["token"], [{"name": "web", "kind": "http", "domain": host}]
    )
    assert "url" in agent.ready["ready"]["web"], agent.ready
    with Probe(server.base_url, server.http_addr, host) as probe:
        # What the machine gives without an attack: on a loaded one (the suite shares two
        # cores with other runs), that can be more than the 100 ms the issue asks for.
        quiet_healthz, quiet_tunnel = probe.run(samples=200)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
        sources = [f"127.0.0.{n}" for n in range(2, 6)]
        attackers, results = start_attackers(
            attack_with_huge_heads, (("127.0.0.1", server.port), head, None), sources
        )
        try:
            healthz, tunnel = probe.run(samples=200, until=lambda: results.qsize() >= 8)
        finally:
            stop_attackers(attackers)
    refusals = [results.get(timeout=5) for _ in range(8)]
    print(
        f"\napi: p99 healthz {quiet_healthz * 1000:.1f} -> {healthz * 1000:.1f} ms, "
        f"through the tunnel {quiet_tunnel * 1000:.1f} -> {tunnel * 1000:.1f} ms; "
        f"refused within {max(elapsed for elapsed, _ in refusals) * 1000:.0f} ms"
    )
    assert max(elapsed for elapsed, _ in refusals) < 1.0, refusals
    # The bound is 100 ms; on a machine slower than that without any attack, the
    # attack may cost at most a small factor of what it gives when quiet.
    assert healthz < max(0.1, 3 * quiet_healthz), (healthz, quiet_healthz)
    assert tunnel < max(0.1, 3 * quiet_tunnel), (tunnel, quiet_tunnel)
    # The answer leaves before the server hangs up; a client still sending may see only the reset.
    answers = [ngrok_error(answer, 431) for _, answer in refusals if answer]
    assert answers, "no attacker received the 431"
    assert all(error["error_code"] == "ERR_NGROK_90431" for error in answers)


def test_ten_thousand_headers_are_refused(server: BurrowServer) -> None:
    fields = b"".join(b"X-%d: y\r\n" % n for n in range(10_000))
    error = ngrok_error(exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"), 431)
    assert error["error_code"] == "ERR_NGROK_90431"
    assert "100 header fields" in str(error["msg"])


def test_a_head_over_64_kib_is_refused_and_one_under_is_served(server: BurrowServer) -> None:
    def request(size: int) -> bytes:
        return b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * size + b"\r\nConnection: close\r\n\r\n"

    assert exchange(server, request(60 * 1024)).startswith(b"HTTP/1.1 200 ")
    error = ngrok_error(exchange(server, request(64 * 1024)), 431)
    assert "65536 bytes" in str(error["msg"])


@pytest.mark.parametrize(
    ("request_line", "status", "code"),
    [
        (b"GET /healthz\r\n\r\n", 505, "ERR_NGROK_90505"),  # HTTP/0.9
        (b"GET /healthz HTTP/2.0\r\n\r\n", 505, "ERR_NGROK_90505"),
        (b"NONSENSE\r\n\r\n", 400, "ERR_NGROK_90400"),
        (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", 400, "ERR_NGROK_90400"),
    ],
)
def test_what_is_not_http_1_is_refused_with_an_ngrok_error(
    server: BurrowServer, request_line: bytes, status: int, code: str
) -> None:
    response = exchange(server, request_line)
    assert b"Invalid HTTP request received" not in response
    assert ngrok_error(response, status)["error_code"] == code


def test_http_1_0_is_served(server: BurrowServer) -> None:
    response = exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b'{"status":"ok","database":"ok"}')


def _timed(server: BurrowServer, send: list[bytes], pause: float = 0.0) -> tuple[bytes, float]:
    """Send ``send`` (pausing between pieces, as long as the server listens); what came back, when."""
    with connect(server) as sock:
        started = time.monotonic()
        for piece in send:
            try:
                sock.sendall(piece)
            except OSError:
                break
            time.sleep(pause)
        return read_all(sock), time.monotonic() - started


def test_an_idle_connection_is_closed_at_the_head_timeout(impatient: BurrowServer) -> None:
    response, elapsed = _timed(impatient, [])
    assert response == b""  # nothing was asked: nothing is answered
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1


def test_slowloris_is_closed_at_the_head_timeout(impatient: BurrowServer) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(50))
    response, elapsed = _timed(impatient, [head[i : i + 1] for i in range(len(head))], pause=0.02)
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1
    assert ngrok_error(response, 408)["error_code"] == "ERR_NGROK_90408"


@pytest.mark.parametrize("body", [b"", b'{"descr'], ids=["head-only", "short-body"])
def test_a_body_that_stalls_is_closed_at_the_body_timeout(impatient: BurrowServer, body: bytes) -> None:
    head = (
        b"POST /credentials HTTP/1.1\r\nHost: x\r\nNgrok-Version: 2\r\n"
        b"Authorization: Bearer " + impatient.api_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    before = impatient.snapshot()
    response, elapsed = _timed(impatient, [head + body])
    assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 1
    assert ngrok_error(response, 408)["error_code"] == "ERR_NGROK_90408"
    assert impatient.snapshot() == before


def test_a_body_that_keeps_coming_is_not_cut_off(impatient: BurrowServer) -> None:
    body = b'{"description": "slow but steady"}'
    head = (
        b"POST /credentials HTTP/1.1\r\nHost: x\r\nNgrok-Version: 2\r\nConnection: close\r\n"
        b"Authorization: Bearer " + impatient.api_key.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    pieces = [head] + [body[i : i + 4] for i in range(0, len(body), 4)]
    response, elapsed = _timed(impatient, pieces, pause=TIMEOUT / 3)
    assert elapsed > TIMEOUT * 2  # longer than the timeout in all, never silent that long
    assert response.startswith(b"HTTP/1.1 201 "), response[:200]


def test_an_idle_keep_alive_connection_is_closed(impatient: BurrowServer) -> None:
    with connect(impatient) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        response = read_all(sock)
        assert TIMEOUT * 0.9 < time.monotonic() - started < TIMEOUT + 1
    assert response.startswith(b"HTTP/1.1 200 ")


def test_connections_are_capped_per_client_and_in_all(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data").start(
        "--api-max-connections", "6", "--api-max-connections-per-client", "3"
    )
    held: list[socket.socket] = []
    try:
        held += [connect(server, "127.0.0.2") for _ in range(3)]
        time.sleep(0.2)
        error = ngrok_error(read_all(connect(server, "127.0.0.2")), 503)
        assert error["error_code"] == "ERR_NGROK_90503"
        assert "3 connections from 127.0.0.2" in str(error["msg"])
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200  # other clients still get in

        held += [connect(server, "127.0.0.3") for _ in range(3)]
        time.sleep(0.2)
        error = ngrok_error(read_all(connect(server, "127.0.0.4")), 503)
        assert "6 connections open" in str(error["msg"])

        held.pop().close()  # a freed slot is taken again
        deadline = time.monotonic() + 5
        while httpx.get(f"{server.base_url}/healthz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0


def test_1100_idle_connections_under_a_1024_file_limit_do_not_lock_out_the_api(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data").start("--api-head-timeout", "1", file_limit=1024)
    held: list[socket.socket] = []
    try:
        # From one address: it gets its 64, and everyone else still gets in.
        for _ in range(1100):
            with contextlib.suppress(OSError):
                held.append(connect(server, "127.0.1.1"))
        assert httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
        for sock in held:
            sock.close()
        held.clear()
        # From 40 addresses, so that the listener-wide cap is reached, not only per-client ones.
        for n in range(1100):
            with contextlib.suppress(OSError):
                held.append(connect(server, f"127.0.1.{n % 40 + 1}"))
        # The connections over the cap were answered 503 and closed at once; the rest wait
        # for the head timeout.
        refused = sum(b"HTTP/1.1 503 " in read_all(sock, 3) for sock in held[-50:])
        assert refused > 25
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the API stayed locked out"
            time.sleep(0.1)
        assert server.process is not None and server.process.poll() is None
        log = server.log()
        assert "capped at" in log  # the caps were fitted to the file limit
        assert "Too many open files" not in log and "Traceback" not in log
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_running_out_of_file_descriptors_neither_spins_nor_kills_the_server(tmp_path: Path) -> None:
    # The public HTTP listener has no cap of its own yet, so 1,100 connections to it exhaust
    # the process's 1,024 descriptors: accepting then fails with EMFILE on every listener.
    server = BurrowServer(tmp_path / "data").start("--no-access-log", file_limit=1024)
    host, port = server.http_addr.rsplit(":", 1)
    held: list[socket.socket] = []
    try:
        for _ in range(1100):
            with contextlib.suppress(OSError):
                held.append(socket.create_connection((host, int(port)), timeout=1))
        before = server.cpu_seconds()
        for _ in range(5):  # connections the server cannot take are closed, not retried forever
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{server.base_url}/healthz", timeout=2)
        time.sleep(1)
        assert server.cpu_seconds() - before < 0.5
        for sock in held:
            sock.close()
        held.clear()
        deadline = time.monotonic() + 5
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the API did not recover"
            time.sleep(0.1)
        assert server.process is not None and server.process.poll() is None
    finally:
        for sock in held:
            sock.close()
        assert server.stop() == 0
