"""No client can stall or starve the agent listener (docs/limits.md)."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from burrow.edge.muxado_protocol import SYN, ErrorCode, FrameType, encode_frame
from tests.edge.test_robustness import auth_frames, connect, read_until_closed
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e  # every test here runs `burrow serve`

AUTH_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    """Default limits."""
    server = BurrowServer(tmp_path_factory.mktemp("agent-abuse") / "data").start("--no-access-log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    """Short timeouts and a small message limit, so that the tests run fast."""
    server = BurrowServer(tmp_path_factory.mktemp("agent-strict") / "data").start(
        "--no-access-log",
        "--agent-auth-timeout",
        str(AUTH_TIMEOUT),
        "--agent-tls-handshake-timeout",
        str(AUTH_TIMEOUT),
        "--agent-max-message-bytes",
        "4096",
    )
    yield server
    server.stop()


def go_away(received: bytes) -> tuple[int, str]:
    """The error code and message of the GOAWAY frame in ``received``."""
    while len(received) >= 8:
        word, _ = struct.unpack_from(">II", received)
        length = word >> 8
        if (word >> 4) & 0xF == FrameType.GOAWAY:
            code = int.from_bytes(received[12:16], "big")
            return code, received[16 : 8 + length].decode()
        received = received[8 + length :]
    raise AssertionError("no GOAWAY")


def stream_frame(stream_id: int, kind: int, message: bytes) -> bytes:
    return encode_frame(FrameType.DATA, stream_id, struct.pack(">I", kind) + message, SYN)


def closed_after(connection: ssl.SSLSocket) -> tuple[bytes, float]:
    started = time.monotonic()
    received = read_until_closed(connection)
    return received, time.monotonic() - started


def assert_no_crash(server: BurrowServer) -> None:
    log = server.log()
    for sign in ("Task exception was never retrieved", "RecursionError", "Traceback"):
        assert sign not in log


def test_a_deeply_nested_auth_gets_a_goaway_at_once(server: BurrowServer) -> None:
    with connect(server) as connection:
        connection.sendall(stream_frame(1, 0, b'{"Version": ' + b"[" * 100_000))
        received, elapsed = closed_after(connection)
    assert elapsed < 1
    code, message = go_away(received)
    assert code == ErrorCode.PROTOCOL
    assert "nest at most 32 levels" in message
    assert_no_crash(server)


def test_a_deeply_nested_bind_ends_the_session_at_once(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    with connect(server) as connection:
        connection.sendall(auth_frames(token))
        time.sleep(0.3)
        connection.sendall(stream_frame(3, 1, b'{"Opts": ' + b'{"a": ' * 20_000))
        received, elapsed = closed_after(connection)
    assert b'"ClientId": "ts_' in received  # authenticated first
    assert elapsed < 1
    code, message = go_away(received)
    assert code == ErrorCode.PROTOCOL and "nest at most 32 levels" in message
    assert_no_crash(server)


def test_a_message_over_the_size_limit_gets_a_goaway(strict: BurrowServer) -> None:
    with connect(strict) as connection:
        # In frames within the frame limit (which, before Auth, is the message limit).
        connection.sendall(stream_frame(1, 0, b'{"Version": ["3"], "Pad": "' + b"x" * 2048))
        connection.sendall(encode_frame(FrameType.DATA, 1, b"x" * 2048))
        received, elapsed = closed_after(connection)
    assert elapsed < 1
    code, message = go_away(received)
    assert code == ErrorCode.PROTOCOL and "limited to 4096 bytes" in message


def test_a_message_that_is_no_object_gets_a_goaway(server: BurrowServer) -> None:
    with connect(server) as connection:
        connection.sendall(stream_frame(1, 0, b'  "a string"'))
        received, _ = closed_after(connection)
    assert "must be a JSON object" in go_away(received)[1]


def _auth_message() -> bytes:
    """A large Auth (about 150 KiB in many small objects), whose token is refused."""
    pad = {f"k{n}": [n, {"v": "x" * 8}] for n in range(4000)}
    message = {"Version": ["3", "2"], "ClientId": "", "Extra": {"AuthToken": "not-a-token", "Pad": pad}}
    return json.dumps(message).encode()


def _authenticate(server: BurrowServer, message: bytes, pieces: int) -> None:
    """Send ``message`` as one Auth, the last ``pieces`` bytes one by one, and wait for the end."""
    with connect(server) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = struct.pack(">I", 0) + message[: len(message) - pieces]
        connection.sendall(encode_frame(FrameType.DATA, 1, head, SYN))
        for byte in message[len(message) - pieces :]:
            time.sleep(0.002)  # each piece its own read on the server
            connection.sendall(encode_frame(FrameType.DATA, 1, bytes([byte])))
        received = read_until_closed(connection)
    assert b"ERR_NGROK_105" in received  # the whole message was read, parsed and answered


def test_an_auth_sent_byte_by_byte_costs_no_more_than_one_sent_at_once(server: BurrowServer) -> None:
    message, pieces = _auth_message(), 400
    _authenticate(server, message, 0)  # warm up

    def cpu(pieces: int) -> float:
        """The server's CPU time for one Auth, the least of three (spikes come from elsewhere)."""
        costs = []
        for _ in range(3):
            before = server.cpu_seconds()
            _authenticate(server, message, pieces)
            costs.append(server.cpu_seconds() - before)
        return min(costs)

    fast, slow = cpu(0), cpu(pieces)
    # Each piece costs a TLS record, a frame, a read and a window update (about 0.1 ms),
    # never a re-parse of what came before (2 ms for this message, before the scanner).
    assert slow < fast + pieces * 0.0004, f"{pieces} pieces: {slow:.3f} s, at once: {fast:.3f} s"


def test_a_connection_that_never_authenticates_is_closed_at_the_auth_timeout(strict: BurrowServer) -> None:
    with connect(strict) as connection:
        started = time.monotonic()
        received = read_until_closed(connection)
        elapsed = time.monotonic() - started
    assert AUTH_TIMEOUT * 0.8 < elapsed < AUTH_TIMEOUT + 1.5
    code, message = go_away(received)
    assert code == ErrorCode.PROTOCOL and f"no Auth within {AUTH_TIMEOUT:g} s" in message


def test_heartbeats_do_not_stand_in_for_auth(strict: BurrowServer) -> None:
    with connect(strict) as connection:
        started = time.monotonic()
        connection.sendall(encode_frame(FrameType.DATA, 1, struct.pack(">I", 0xFFFFFFFF), SYN))
        connection.settimeout(0.2)
        received = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while time.monotonic() - started < AUTH_TIMEOUT + 3:
                with contextlib.suppress(TimeoutError, ssl.SSLWantReadError):
                    connection.sendall(encode_frame(FrameType.DATA, 1, b"beat"))
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    received += chunk
        elapsed = time.monotonic() - started
    assert elapsed < AUTH_TIMEOUT + 1.5
    assert "no Auth within" in go_away(received)[1]


def test_garbage_after_tls_is_closed_at_once(server: BurrowServer) -> None:
    rng = random.Random(9)  # reproducible garbage
    slowest = 0.0
    for _ in range(100):
        with connect(server) as connection:
            connection.sendall(rng.randbytes(64))
            _, elapsed = closed_after(connection)
            slowest = max(slowest, elapsed)
    assert slowest < 1, f"a garbage connection stayed {slowest:.1f} s"


def test_a_tls_handshake_that_never_finishes_is_closed(strict: BurrowServer) -> None:
    host, port = strict.agent_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        started = time.monotonic()
        raw.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, and no more
        with contextlib.suppress(ConnectionError):
            assert raw.recv(1024) == b""
        assert time.monotonic() - started < AUTH_TIMEOUT + 1.5


def _tls(server: BurrowServer, source: str) -> ssl.SSLSocket | None:
    """A TLS connection to the agent listener from ``source``; None if the server refused it."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    host, port = server.agent_addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=5, source_address=(source, 0))
    try:
        return context.wrap_socket(raw, server_hostname=host)
    except (ConnectionError, ssl.SSLError):
        raw.close()
        return None


def test_agent_connections_are_capped_per_client_and_in_all(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data").start(
        "--agent-max-connections", "3", "--agent-max-connections-per-client", "2"
    )
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(2):
            connection = _tls(server, "127.0.0.2")
            assert connection is not None
            held.append(connection)
        assert _tls(server, "127.0.0.2") is None  # a third from the same address
        third = _tls(server, "127.0.0.3")
        assert third is not None  # another address still gets in
        held.append(third)
        assert _tls(server, "127.0.0.4") is None  # the listener is full
        held.pop().close()
        deadline = time.monotonic() + 5
        while (again := _tls(server, "127.0.0.4")) is None:
            assert time.monotonic() < deadline, "a freed slot was not taken again"
            time.sleep(0.1)
        held.append(again)
    finally:
        for connection in held:
            connection.close()
        assert server.stop() == 0


def test_connections_that_end_before_tls_free_their_slot_at_once(tmp_path: Path) -> None:
    server = BurrowServer(tmp_path / "data").start("--agent-max-connections-per-client", "3")
    try:
        host, port = server.agent_addr.rsplit(":", 1)
        for n in range(20):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                if n % 2:
                    raw.sendall(b"\x16\x03\x01")  # a ClientHello begun, then dropped
        time.sleep(0.3)
        connection = _tls(server, "127.0.0.1")
        assert connection is not None, "slots were still held by connections that had ended"
        connection.close()
    finally:
        assert server.stop() == 0
