"""The public listeners' edges: what clients that misbehave, hang up or half-close get."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow.domain.limits import FIXED_DESCRIPTORS, PUBLIC_LISTENERS, PublicLimits
from burrow.edge.agent import MAX_STREAMS_PER_AGENT
from tests.edge.conftest import Agent
from tests.edge.test_sdk import credential, public_get
from tests.harness import BurrowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("public") / "data").start()
    yield server
    server.stop()


def address(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def exchange(addr: str, data: bytes, half_close: bool = False) -> bytes:
    """Send ``data`` (then our FIN, if asked), and read until the server closes."""
    with socket.create_connection(address(addr), timeout=10) as connection:
        connection.sendall(data)
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_a_request_without_a_host_gets_400(server: BurrowServer) -> None:
    assert exchange(server.http_addr, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_an_endless_request_head_gets_431(server: BurrowServer) -> None:
    head = b"GET / HTTP/1.1\r\nHost: a.example\r\n" + b"X-Padding: " + b"p" * (70 * 1024)
    answer = exchange(server.http_addr, head)
    assert answer.startswith(b"HTTP/1.1 431 ") and b"ERR_NGROK_90431" in answer


def test_an_unknown_host_gets_the_404_page(server: BurrowServer) -> None:
    answer = exchange(server.http_addr, b"GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404 ") and b"ERR_NGROK_3200" in answer
    assert b"nobody.example" in answer


def test_a_client_that_leaves_mid_head_is_just_closed(server: BurrowServer) -> None:
    assert exchange(server.http_addr, b"GET / HTTP/1.1\r\nHo", half_close=True) == b""
    assert public_get(server, "nobody.example").status_code == 404  # still serving


def test_an_unknown_tls_name_is_closed_without_an_answer(server: BurrowServer) -> None:
    context = ssl.create_default_context()
    with (
        socket.create_connection(address(server.tls_addr), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
    ):
        context.wrap_socket(raw, server_hostname="nobody.burrow.localhost")


def test_half_closed_request_still_gets_its_answer(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "half.burrow.localhost"}])
    answer = exchange(
        server.http_addr,
        b"GET /half HTTP/1.1\r\nHost: half.burrow.localhost\r\nConnection: close\r\n\r\n",
        half_close=True,
    )
    assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]
    assert b'"path": "/half"' in answer or b'"path":"/half"' in answer


def test_tcp_echo_after_our_fin_and_a_client_that_vanishes(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "tcp", "kind": "tcp"}])
    tcp = f"127.0.0.1:{server.tcp_port}"
    payload = bytes(range(256)) * 4096  # 1 MiB: more than a window, sent before our FIN
    assert exchange(tcp, payload, half_close=True) == payload
    # A client that sends a lot and disappears without reading leaves nothing behind.
    for _ in range(5):
        with socket.create_connection(address(tcp), timeout=10) as connection:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.sendall(payload)
    assert exchange(tcp, b"still there", half_close=True) == b"still there"


def test_past_the_stream_cap_a_connection_is_refused_and_the_session_lives(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "tcp", "kind": "tcp"}])
    tcp = address(f"127.0.0.1:{server.tcp_port}")
    held: list[socket.socket] = []
    try:
        while True:
            # From several addresses: one address may hold only 64 connections (PublicLimits).
            source = (f"127.0.0.{2 + len(held) // 60}", 0)
            connection = socket.create_connection(tcp, timeout=10, source_address=source)
            connection.sendall(b"x")
            try:
                echoed = connection.recv(1)
            except ConnectionResetError:  # closed with our "x" unread: a reset, not a FIN
                echoed = b""
            if echoed != b"x":  # closed: the agent has no room for one more
                connection.close()
                break
            held.append(connection)
            assert len(held) < MAX_STREAMS_PER_AGENT
        # The cap counts every stream to the agent; its heartbeat stream is one of them.
        assert len(held) >= MAX_STREAMS_PER_AGENT - 8
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # once the agent has let go of a stream, there is room again
            with socket.create_connection(tcp, timeout=10, source_address=("127.0.0.99", 0)) as again:
                again.sendall(b"y")
                with contextlib.suppress(ConnectionResetError):  # still no room
                    if again.recv(1) == b"y":
                        break
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.1)
    finally:
        for connection in held:
            connection.close()


def test_the_public_connection_cap_is_fitted_to_the_file_limit(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data").start(file_limit=1024)
    listening = 3 + 1  # the API, agent and public listeners counted apart, and one TCP port
    cap = (1024 - FIXED_DESCRIPTORS - listening) // 2 // PUBLIC_LISTENERS
    assert cap < PublicLimits().max_connections
    http = address(server.http_addr)
    held: list[socket.socket] = []
    try:
        # From several addresses, so that the listener's cap is reached, not a client's.
        for n in range(cap + 10):
            source = (f"127.0.3.{n // 50 + 1}", 0)
            held.append(socket.create_connection(http, timeout=5, source_address=source))
        refused = []
        for connection in held[cap - 5 :]:
            connection.settimeout(0.5)
            try:
                refused.append(connection.recv(100).startswith(b"HTTP/1.1 503 "))
            except TimeoutError:  # admitted: waiting for its request
                refused.append(False)
        assert refused == [False] * 5 + [True] * 10
    finally:
        for connection in held:
            connection.close()
        server.stop()
