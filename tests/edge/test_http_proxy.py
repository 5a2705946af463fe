"""The public HTTP(S) listeners as a reverse proxy, with the real agent SDK behind them."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.edge.conftest import AGENT, SDK_PYTHON, Agent
from tests.edge.test_public import address
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("proxy") / "data").start()
    yield server
    server.stop()


class Connection:
    """A raw keep-alive client connection that reads responses by their framing."""

    def __init__(self, addr: str, wrap: Callable[[socket.socket], socket.socket] | None = None) -> None:
        raw = socket.create_connection(address(addr), timeout=30)
        self.sock = wrap(raw) if wrap else raw
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("closed")
        self.buffer += data

    def read_head(self) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        return int(lines[0].split()[1]), {k.lower(): v for k, v in fields}, fields  # type: ignore[misc]

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while True:  # trailer lines, then the empty line
                    while b"\r\n" not in self.buffer:
                        self._fill()
                    line, self.buffer = self.buffer.split(b"\r\n", 1)
                    if not line:
                        return body
            body += self.read_exactly(size + 2)[:-2]

    def request(
        self, head: bytes, body: bytes = b"", method_head: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(head + body)
        status, headers, _ = self.read_head()
        if method_head or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            return status, headers, self.read_chunked()
        return status, headers, self.read_exactly(int(headers.get("content-length", "0")))

    def closed_by_server(self, within: float) -> bool:
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
            return True
        except TimeoutError:
            return False
        except OSError:
            return True


def get(host: str, path: str = "/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


def test_one_connection_reaches_each_hosts_own_tunnel_across_accounts(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    start_agent(
        server,
        credential(server, [])["token"],
        [{"name": "web", "kind": "http", "domain": "alpha.burrow.localhost"}],
        label="alpha",
    )
    other_key = server.new_account("other@example.com")
    with server.client(other_key) as http:
        other = http.post("/credentials", json={"description": "other", "acl": []}).json()
    start_agent(
        server,
        other["token"],
        [{"name": "web", "kind": "http", "domain": "beta.burrow.localhost"}],
        label="beta",
    )
    connection = Connection(server.http_addr)
    try:
        for turn in range(6):
            name = "alpha" if turn % 2 == 0 else "beta"
            status, _, body = connection.request(get(f"{name}.burrow.localhost", f"/turn{turn}"))
            assert status == 200
            answer = json.loads(body)
            assert (answer["service"], answer["path"]) == (name, f"/turn{turn}")
        # Pipelined requests for two tenants, in one write: each answered by its own, in order.
        connection.sock.sendall(get("alpha.burrow.localhost", "/p1") + get("beta.burrow.localhost", "/p2"))
        for name, path in (("alpha", "/p1"), ("beta", "/p2")):
            status, headers, _ = connection.read_head()
            answer = json.loads(connection.read_exactly(int(headers["content-length"])))
            assert status == 200 and (answer["service"], answer["path"]) == (name, path)
        # What the local service sees: forwarding fields added, hop-by-hop fields gone.
        status, _, body = connection.request(
            get(
                "beta.burrow.localhost:8080",
                "/headers?x=1",
                "Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
                "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: gopher\r\nX-Kept: yes\r\n",
            )
        )
        assert status == 200
        seen = {name.lower(): value for name, value in json.loads(body)["headers"]}
        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "beta.burrow.localhost:8080"
        assert seen["x-kept"] == "yes" and seen["host"] == "beta.burrow.localhost:8080"
        assert not {"x-hop", "keep-alive", "te"} & set(seen)
        # An unknown Host on the same connection is answered here, never forwarded.
        status, headers, body = connection.request(get("nobody.burrow.localhost"))
        assert status == 404 and b"ERR_NGROK_3200" in body and headers["connection"] == "close"
    finally:
        connection.close()


def test_websocket_upgrade_then_raw_bytes_both_ways(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    start_agent(
        server,
        credential(server, [])["token"],
        [{"name": "web", "kind": "http", "domain": "ws.burrow.localhost"}],
    )
    key = base64.b64encode(os.urandom(16)).decode()
    connection = Connection(server.http_addr)
    try:
        connection.sock.sendall(
            get(
                "ws.burrow.localhost",
                "/socket",
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n",
            )
        )
        status, headers, _ = connection.read_head()
        assert status == 101 and headers["upgrade"].lower() == "websocket"
        expected = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        )
        assert headers["sec-websocket-accept"] == expected.decode()
        for message in (
            b"\x81\x85abcd" + bytes(c ^ m for c, m in zip(b"hello", b"abcdabcd", strict=False)),
            os.urandom(300_000),
        ):
            connection.sock.sendall(message)
            assert connection.read_exactly(len(message)) == message
    finally:
        connection.close()


@pytest.fixture(scope="module")
def web(server: BurrowServer) -> Iterator[str]:
    """An HTTP endpoint for the transfer tests (its agent lives for the module)."""
    config = {
        "token": credential(server, [])["token"],
        "server_addr": server.agent_addr,
        "ca": str(server.ca_path),
        "endpoints": [{"name": "web", "kind": "http", "domain": "files.burrow.localhost"}],
    }
    process = subprocess.Popen(
        [str(SDK_PYTHON), str(AGENT), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and "url" in process.stdout.readline()
    yield "files.burrow.localhost"
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=10)


@pytest.mark.e2e  # the `web` fixture runs the SDK agent
def test_uploads_of_20_mib_arrive_whole_with_either_framing(server: BurrowServer, web: str) -> None:
    payload = os.urandom(20 * MiB)
    digest = hashlib.sha256(payload).hexdigest()
    connection = Connection(server.http_addr)
    try:
        head = f"POST /up HTTP/1.1\r\nHost: {web}\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        status, _, body = connection.request(head, payload)
        assert status == 200 and json.loads(body) == {
            "received": len(payload),
            "sha256": digest,
            "framing": "length",
        }
        chunks = b"".join(
            b"%x\r\n%b\r\n" % (len(part), part)
            for part in (payload[i : i + 700_001] for i in range(0, len(payload), 700_001))
        )
        head = f"POST /up HTTP/1.1\r\nHost: {web}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        status, _, body = connection.request(head, chunks + b"0\r\nX-Trailer: t\r\n\r\n")
        assert status == 200 and json.loads(body) == {
            "received": len(payload),
            "sha256": digest,
            "framing": "chunked",
        }
        # Expect: 100-continue: the agent's 100 comes back before we send the body.
        connection.sock.sendall(
            f"POST /up HTTP/1.1\r\nHost: {web}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, _, _ = connection.read_head()
        assert status == 100
        connection.sock.sendall(b"hello")
        status, headers, _ = connection.read_head()
        body = connection.read_exactly(int(headers["content-length"]))
        assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(b"hello").hexdigest()
    finally:
        connection.close()


@pytest.mark.e2e  # the `web` fixture runs the SDK agent
def test_head_and_a_20_mib_download(server: BurrowServer, web: str) -> None:
    connection = Connection(server.http_addr)
    try:
        status, headers, body = connection.request(
            f"HEAD /bytes/1000 HTTP/1.1\r\nHost: {web}\r\n\r\n".encode(), method_head=True
        )
        assert status == 200 and headers["content-length"] == "1000" and body == b""
        size = 20 * MiB
        status, headers, body = connection.request(get(web, f"/bytes/{size}"))
        block = bytes(range(256)) * 4096
        expected = hashlib.sha256((block * (size // len(block) + 1))[:size]).hexdigest()
        assert status == 200 and hashlib.sha256(body).hexdigest() == expected
        status, _, body = connection.request(get(web, "/after"))  # the connection is still good
        assert status == 200 and json.loads(body)["path"] == "/after"
    finally:
        connection.close()


@pytest.mark.e2e  # the `web` fixture runs the SDK agent
def test_bad_requests_are_answered_here(server: BurrowServer, web: str) -> None:
    for request, status in (
        (f"GET / HTTP/2.0\r\nHost: {web}\r\n\r\n", 505),
        (f"GET / HTTP/1.1\r\nHost: {web}\r\nHost: other\r\n\r\n", 400),
        (f"POST / HTTP/1.1\r\nHost: {web}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (f"GET http://elsewhere/ HTTP/1.1\r\nHost: {web}\r\n\r\n", 400),
    ):
        connection = Connection(server.http_addr)
        try:
            assert connection.request(request.encode())[0] == status, request
        finally:
            connection.close()


def traffic_lines(server: BurrowServer) -> list[dict[str, Any]]:
    lines = []
    for line in server.log().splitlines():
        if line.startswith("{") and '"listener"' in line:
            lines.append(json.loads(line))
    return lines


@pytest.mark.e2e  # the `web` fixture runs the SDK agent
def test_the_traffic_log_has_a_line_per_request_without_secrets(server: BurrowServer, web: str) -> None:
    connection = Connection(server.http_addr)
    try:
        status, _, _ = connection.request(
            get(web, "/logged/path?token=querysecret", "Authorization: Bearer headersecret\r\n")
        )
        assert status == 200
    finally:
        connection.close()
    deadline = time.monotonic() + 5
    while not (lines := [e for e in traffic_lines(server) if e.get("path") == "/logged/path"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    entry = lines[0]
    assert entry["listener"] == "http" and entry["host"] == web and entry["method"] == "GET"
    assert entry["status"] == 200 and entry["bytes_out"] > 0 and entry["bytes_in"] == 0
    assert entry["tunnel"].startswith("tn_") and entry["client"].startswith("127.0.0.1:")
    assert entry["duration_ms"] >= 0 and entry["time"].endswith("Z")
    assert "querysecret" not in server.log() and "headersecret" not in server.log()


def test_tcp_connections_are_in_the_traffic_log(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    start_agent(server, credential(server, [])["token"], [{"name": "tcp", "kind": "tcp"}])
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as tcp:
        tcp.sendall(b"x" * 1000)
        received = b""
        while len(received) < 1000:
            received += tcp.recv(65536)
    deadline = time.monotonic() + 5
    while not (
        lines := [e for e in traffic_lines(server) if e["listener"] == "tcp" and e["bytes_in"] == 1000]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert lines[0]["port"] == server.tcp_port and lines[0]["bytes_out"] == 1000


# HTTPS ------------------------------------------------------------------------------------


def tls_client(ca: bytes, name: str) -> Callable[[socket.socket], socket.socket]:
    context = ssl.create_default_context(cadata=ca.decode())
    return lambda raw: context.wrap_socket(raw, server_hostname=name)


def test_https_endpoint_with_a_certificate_from_the_local_ca(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    name = "secure.burrow.localhost"
    agent = start_agent(
        server,
        credential(server, [])["token"],
        [{"name": "web", "kind": "http", "domain": name, "scheme": "https"}],
    )
    assert agent.url("web") == f"https://{name}:{server.https_addr.rsplit(':', 1)[1]}"
    connection = Connection(server.https_addr, tls_client(server.ca_path.read_bytes(), name))
    try:
        status, _, body = connection.request(get(name, "/headers"))
        assert status == 200
        seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
        assert seen["x-forwarded-proto"] == "https"
        # Another Host than the TLS name on this connection is refused.
        status, _, body = connection.request(get("alpha.burrow.localhost"))
        assert status == 421
    finally:
        connection.close()
    # An https endpoint is not served on plain HTTP (ngrok: one endpoint per scheme).
    plain = Connection(server.http_addr)
    try:
        assert plain.request(get(name))[0] == 404
    finally:
        plain.close()
    # Names nobody serves get no certificate.
    with pytest.raises((ssl.SSLError, OSError)):
        Connection(server.https_addr, tls_client(server.ca_path.read_bytes(), "nobody.burrow.localhost"))


def _throwaway_ca(directory: Path, name: str) -> tuple[bytes, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test operator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "op.pem", directory / "op-key.pem"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path


def test_https_with_the_operators_certificate(tmp_path: Path, start_agent: Callable[..., Agent]) -> None:
    ca, cert, key = _throwaway_ca(tmp_path, "*.op.example")
    server = BurrowServer(tmp_path / "data").start("--https-cert", str(cert), "--https-key", str(key))
    try:
        start_agent(
            server,
            credential(server, [])["token"],
            [{"name": "web", "kind": "http", "domain": "site.op.example", "scheme": "https"}],
        )
        connection = Connection(server.https_addr, tls_client(ca, "site.op.example"))
        try:
            status, _, body = connection.request(get("site.op.example", "/op"))
            assert status == 200 and json.loads(body)["path"] == "/op"
        finally:
            connection.close()
    finally:
        server.stop()


# Limits and timeouts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("strict") / "data").start(
        "--head-timeout",
        "1",
        "--body-timeout",
        "1",
        "--idle-timeout",
        "1",
        "--max-connections-per-client",
        "4",
    )
    yield server
    server.stop()


def test_a_96_kib_head_gets_431_at_once(strict: BurrowServer) -> None:
    connection = Connection(strict.http_addr)
    try:
        started = time.monotonic()
        connection.sock.sendall(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Big: " + b"b" * (96 * 1024))
        status, headers, _ = connection.read_head()
        assert status == 431 and time.monotonic() - started < 1
        assert headers["ngrok-error-code"] == "ERR_NGROK_90431"
    finally:
        connection.close()
    many = "".join(f"X-{i}: {i}\r\n" for i in range(101))
    connection = Connection(strict.http_addr)
    try:
        assert connection.request(get("a.example", "/", many))[0] == 431
    finally:
        connection.close()


def test_timeouts_close_slow_and_idle_connections(
    strict: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    start_agent(
        strict,
        credential(strict, [])["token"],
        [{"name": "web", "kind": "http", "domain": "t.burrow.localhost"}],
    )
    slow_head = Connection(strict.http_addr)
    slow_body = Connection(strict.http_addr)
    idle = Connection(strict.http_addr)
    try:
        slow_head.sock.sendall(b"GET / HTTP/1.1\r\nHost: t.bur")
        slow_body.sock.sendall(
            b"POST / HTTP/1.1\r\nHost: t.burrow.localhost\r\nContent-Length: 100\r\n\r\nabc"
        )
        assert idle.request(get("t.burrow.localhost"))[0] == 200
        for connection in (slow_head, slow_body, idle):
            assert connection.closed_by_server(within=4)
    finally:
        for connection in (slow_head, slow_body, idle):
            connection.close()
    # A client that keeps sending is not cut off by the head timeout's clock of another request.
    busy = Connection(strict.http_addr)
    try:
        for _ in range(3):
            assert busy.request(get("t.burrow.localhost"))[0] == 200
            time.sleep(0.5)
    finally:
        busy.close()


def test_one_address_cannot_take_every_connection(
    strict: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    start_agent(
        strict,
        credential(strict, [])["token"],
        [{"name": "web", "kind": "http", "domain": "c.burrow.localhost"}],
    )
    host, port = address(strict.http_addr)
    held = []
    try:
        for _ in range(4):
            held.append(socket.create_connection((host, port), timeout=10, source_address=("127.0.0.2", 0)))
        time.sleep(0.2)
        refused = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.2", 0))
        with refused:
            assert refused.recv(65536).startswith(b"HTTP/1.1 503 ")
        other = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.3", 0))
        with other:
            other.sendall(get("c.burrow.localhost"))
            assert other.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for connection in held:
            connection.close()


def test_https_handshakes_count_against_the_per_address_cap(strict: BurrowServer) -> None:
    addr = address(strict.https_addr)
    held = [socket.create_connection(addr, timeout=10, source_address=("127.0.0.4", 0)) for _ in range(4)]
    try:
        time.sleep(0.2)
        with socket.create_connection(addr, timeout=5, source_address=("127.0.0.4", 0)) as fifth:
            assert fifth.recv(1) == b""  # closed at once, before any handshake
        with (
            socket.create_connection(addr, timeout=0.5, source_address=("127.0.0.5", 0)) as other,
            pytest.raises(TimeoutError),
        ):
            other.recv(1)  # another address is waited for (its ClientHello)
    finally:
        for connection in held:
            connection.close()
