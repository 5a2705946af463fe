"""``--proxy-protocol``: behind a load balancer, the PROXY header of a trusted proxy names the
client that admission, IP restrictions, X-Forwarded-For, agents and the traffic log see;
from a trusted proxy a connection without one is closed; other peers are served as they are."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow.domain.proxy_protocol import header
from burrow.edge.certs import ensure_server_certificate
from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow, edge_args, free_port

pytestmark = pytest.mark.e2e

CLIENT = ("198.51.100.9", 5555)  # the address the "load balancer" says it accepted
OUTSIDER = ("203.0.113.5", 6666)  # outside the endpoint's allowed CIDR


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    # 127.0.0.1 is the load balancer; 127.0.0.2 (loopback too) is any other peer.
    server = BurrowServer(tmp_path_factory.mktemp("proxied") / "data").start(
        *["--trusted-proxies", "127.0.0.1/32", "--proxy-protocol", "agent,http,https,tls,tcp"],
        *["--head-timeout", "1.5"],  # also the PROXY header's, on the public listeners
    )
    yield server
    server.stop()


def addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@contextlib.contextmanager
def load_balancer(target: tuple[str, int], client: tuple[str, int], version: int) -> Iterator[int]:
    """A TCP forwarder on loopback that sends a PROXY header naming ``client`` first."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def pump(source: socket.socket, target_sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target_sock.sendall(data)
        with contextlib.suppress(OSError):
            target_sock.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(target)
            upstream.sendall(header(version, client, target))
            for a, b in ((accepted, upstream), (upstream, accepted)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def proxied(target: str, first: bytes, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(addr(target), timeout=5, source_address=(source, 0))
    if first:
        sock.sendall(first)
    return sock


def http_get(sock: socket.socket, host: str, path: str = "/headers") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            answer += data
    sock.close()
    return answer


def forwarded_for(answer: bytes) -> str:
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return next(value for name, value in body["headers"] if name.lower() == "x-forwarded-for")


def test_the_agent_listener_takes_the_balancers_client(
    server: BurrowServer, start_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    with server.client() as http:
        token = http.post("/credentials", json={"acl": []}).json()["token"]
    agent_client = ("198.51.100.77", 4321)
    with load_balancer(addr(server.agent_addr), agent_client, 2) as port:
        endpoints = [
            {
                "name": "web",
                "kind": "http",
                "domain": "pp.example.com",
                "options": [["allow_cidr", "198.51.100.0/24"]],
            },
            {"name": "secure", "kind": "http", "scheme": "https", "domain": "pps.example.com"},
            {"name": "raw", "kind": "tcp"},
            {"name": "passthrough", "kind": "tls", "domain": "ppt.example.com"},
        ]
        service = ensure_server_certificate(tmp_path, ["ppt.example.com"])  # the agent's TLS service's
        agent = start_agent(
            server,
            token,
            endpoints,
            server_addr=f"127.0.0.1:{port}",
            tls_cert=str(service.cert_path),
            tls_key=str(service.key_path),
        )
        assert agent.url("web").startswith("http://pp.example.com"), agent.ready
        started = server.wait_log(lambda entry: entry.get("message") == "agent session started")
        assert started["client"] == "198.51.100.77:4321"

        # HTTP: the header's client is what IP restrictions and X-Forwarded-For see.
        allowed = http_get(
            proxied(server.http_addr, header(1, CLIENT, addr(server.http_addr))), "pp.example.com"
        )
        assert allowed.startswith(b"HTTP/1.1 200"), allowed[:300]
        assert forwarded_for(allowed) == CLIENT[0]
        denied = http_get(
            proxied(server.http_addr, header(2, OUTSIDER, addr(server.http_addr))), "pp.example.com"
        )
        assert denied.startswith(b"HTTP/1.1 403"), denied[:300]
        traffic = server.wait_log(
            lambda entry: (
                entry.get("logger") == "burrow.traffic" and entry.get("client") == "198.51.100.9:5555"
            )
        )
        assert traffic["listener"] == "http"

        # From the trusted proxy, no header (or a bad one) is no connection.
        for first in (b"", b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"):
            assert http_get(proxied(server.http_addr, first), "pp.example.com") == b""
        silent = proxied(server.http_addr, b"")
        began = time.monotonic()
        assert silent.recv(100) == b""  # closed at the header's timeout, not left open
        assert 1 <= time.monotonic() - began < 4.5
        silent.close()
        # Another peer is served as itself: its own address, its "header" only bytes.
        direct = http_get(proxied(server.http_addr, b"", source="127.0.0.2"), "pp.example.com")
        assert direct.startswith(b"HTTP/1.1 403"), direct[:300]  # 127.0.0.2 is outside the CIDR
        spoofed = http_get(
            proxied(server.http_addr, header(1, CLIENT, addr(server.http_addr)), source="127.0.0.2"),
            "pp.example.com",
        )
        assert spoofed.startswith(b"HTTP/1.1 400"), spoofed[:300]

        # HTTPS: the header, then TLS.
        sock = proxied(server.https_addr, header(2, CLIENT, addr(server.https_addr)))
        context = ssl.create_default_context(cafile=str(server.ca_path))
        secure = http_get(context.wrap_socket(sock, server_hostname="pps.example.com"), "pps.example.com")
        assert secure.startswith(b"HTTP/1.1 200"), secure[:300]
        assert forwarded_for(secure) == CLIENT[0]

        # TLS passthrough (by SNI, not decrypted): the header, then the agent's own TLS.
        sock = proxied(server.tls_addr, header(1, ("198.51.100.44", 8888), addr(server.tls_addr)))
        agents_own = ssl.create_default_context(cafile=str(service.ca_path))
        with agents_own.wrap_socket(sock, server_hostname="ppt.example.com") as passthrough:
            passthrough.sendall(b"through")
            assert passthrough.recv(100) == b"tls:through"
        server.wait_log(
            lambda entry: (
                entry.get("logger") == "burrow.traffic" and entry.get("client") == "198.51.100.44:8888"
            )
        )

        # TCP: the traffic log names the header's client.
        port_text = agent.url("raw").rsplit(":", 1)[1]
        tcp = proxied(
            f"127.0.0.1:{port_text}", header(1, ("198.51.100.33", 7777), ("127.0.0.1", int(port_text)))
        )
        tcp.sendall(b"echo me")
        assert tcp.recv(100) == b"echo me"
        tcp.close()
        server.wait_log(
            lambda entry: (
                entry.get("logger") == "burrow.traffic" and entry.get("client") == "198.51.100.33:7777"
            )
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--proxy-protocol", "http"], "--proxy-protocol needs --trusted-proxies"),
        (["--proxy-protocol", "http,ftp", "--trusted-proxies", "10.0.0.0/8"], "is not a list of agent"),
        (
            ["--proxy-protocol", "http", "--trusted-proxies", "10.0.0.0/8", "--workers", "2"],
            "does not work with --workers yet",
        ),
    ],
)
def test_bad_proxy_protocol_settings_are_refused(tmp_path: Path, options: list[str], message: str) -> None:
    data = ["--data-dir", str(tmp_path / "d"), "--api-addr", f"127.0.0.1:{free_port()}"]
    refused = burrow("serve", *data, *edge_args(), *options, check=False)
    assert refused.returncode == 2 and message in refused.stderr, refused.stderr
