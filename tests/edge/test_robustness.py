"""Misbehaving agents lose their own session and nothing else."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from burrow.edge.muxado_protocol import SYN, ErrorCode, FrameType, encode_frame
from tests.edge.conftest import Agent
from tests.edge.test_sdk import credential, public_get
from tests.harness import BurrowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("robust") / "data").start()
    yield server
    server.stop()


def connect(server: BurrowServer) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca_path))
    host, port = server.agent_addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    return context.wrap_socket(raw, server_hostname=host)


def read_until_closed(connection: ssl.SSLSocket) -> bytes:
    received = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except (ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        received += chunk
    else:
        pytest.fail("the server kept a misbehaving connection open")
    return received


def go_away_code(received: bytes) -> int | None:
    """The error code of the last GOAWAY frame in ``received``."""
    code = None
    while len(received) >= 8:
        word, _ = struct.unpack_from(">II", received)
        length = word >> 8
        if (word >> 4) & 0xF == FrameType.GOAWAY and length >= 8:
            code = int.from_bytes(received[12:16], "big")
        received = received[8 + length :]
    return code


def auth_frames(token: str) -> bytes:
    message = json.dumps({"Version": ["3", "2"], "ClientId": "", "Extra": {"AuthToken": token}}).encode()
    return encode_frame(FrameType.DATA, 1, struct.pack(">I", 0) + message, SYN)


@pytest.fixture
def healthy(server: BurrowServer, start_agent: Callable[..., Agent]) -> Iterator[Callable[[], None]]:
    """A well-behaved agent whose tunnel must keep working throughout."""
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "healthy.burrow.localhost"}])

    def check() -> None:
        assert public_get(server, "healthy.burrow.localhost").status_code == 200

    check()
    yield check
    check()


def test_garbage_bytes(server: BurrowServer, healthy: Callable[[], None]) -> None:
    with connect(server) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        # Read as a frame header, this is a 4.6 MB frame: refused for its size.
        assert go_away_code(read_until_closed(connection)) in (ErrorCode.PROTOCOL, ErrorCode.FRAME_SIZE)
    with connect(server) as connection:
        connection.sendall(bytes(range(48, 64)) * 4)  # an unknown frame type
        assert go_away_code(read_until_closed(connection)) in (ErrorCode.PROTOCOL, ErrorCode.FRAME_SIZE)
    healthy()


def test_oversized_frame(server: BurrowServer, healthy: Callable[[], None]) -> None:
    with connect(server) as connection:
        connection.sendall(struct.pack(">II", (0xFFFFFF << 8) | (FrameType.DATA << 4) | SYN, 1))
        assert go_away_code(read_until_closed(connection)) == ErrorCode.FRAME_SIZE
    healthy()


def test_window_overrun(server: BurrowServer, healthy: Callable[[], None]) -> None:
    with connect(server) as connection:
        connection.sendall(encode_frame(FrameType.DATA, 1, b"\0" * (256 * 1024 + 1), SYN))
        assert go_away_code(read_until_closed(connection)) == ErrorCode.FLOW_CONTROL
    healthy()


def test_flood_of_streams(server: BurrowServer, healthy: Callable[[], None]) -> None:
    with connect(server) as connection:
        flood = b"".join(encode_frame(FrameType.DATA, 2 * i + 1, b"", SYN) for i in range(2000))
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            connection.sendall(flood)
        received = read_until_closed(connection)
        assert go_away_code(received) == ErrorCode.ENHANCE_YOUR_CALM
    healthy()


def test_unknown_stream_type_after_auth(server: BurrowServer, healthy: Callable[[], None]) -> None:
    token = credential(server, [])["token"]
    with connect(server) as connection:
        connection.sendall(auth_frames(token))
        time.sleep(0.3)
        connection.sendall(encode_frame(FrameType.DATA, 3, struct.pack(">I", 77), SYN))
        received = read_until_closed(connection)
        assert b'"ClientId": "ts_' in received  # authenticated first
        assert go_away_code(received) == ErrorCode.PROTOCOL
    healthy()


def test_streams_before_auth_are_refused(server: BurrowServer, healthy: Callable[[], None]) -> None:
    with connect(server) as connection:
        bind = json.dumps({"Id": "", "Proto": "http", "Opts": {"Hostname": "sneaky.example"}}).encode()
        connection.sendall(encode_frame(FrameType.DATA, 1, struct.pack(">I", 1) + bind, SYN))
        assert go_away_code(read_until_closed(connection)) == ErrorCode.PROTOCOL
    assert public_get(server, "sneaky.example").status_code == 404
    healthy()


def test_silent_agents_are_dropped_by_heartbeat(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    with connect(server) as connection:
        message = json.dumps(
            {
                "Version": ["3"],
                "Extra": {
                    "AuthToken": token,
                    "HeartbeatInterval": 500_000_000,
                    "HeartbeatTolerance": 500_000_000,
                },
            }
        ).encode()
        connection.sendall(encode_frame(FrameType.DATA, 1, struct.pack(">I", 0) + message, SYN))
        started = time.monotonic()
        received = read_until_closed(connection)  # no heartbeats sent: the server hangs up
        assert b'"Error": ""' in received
        assert 0.8 < time.monotonic() - started < 5
