"""Endpoint options asked for by the unmodified agent SDK, end to end over real sockets."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.edge.conftest import Agent
from tests.harness import BurrowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("options") / "data").start()
    yield server
    server.stop()


def token(server: BurrowServer) -> str:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "options", "acl": []})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def http_endpoint(domain: str, *options: list[Any]) -> dict[str, Any]:
    return {"name": "web", "kind": "http", "domain": domain, "options": [list(o) for o in options]}


def test_oauth_is_refused_naming_the_option(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    agent = start_agent(server, token(server), [http_endpoint("oauth.example", ["oauth", "google"])])
    error = " ".join(agent.error("web"))
    assert "ERR_NGROK_90301" in error and "'OAuth'" in error and "not enforced" in error


def test_a_traffic_policy_action_the_edge_does_not_carry_out_is_refused(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    http_phase = '{"on_http_request": [{"actions": [{"type": "deny"}]}]}'  # no HTTP on a TCP endpoint
    endpoint = {"name": "tcp", "kind": "tcp", "options": [["traffic_policy", http_phase]]}
    error = " ".join(start_agent(server, token(server), [endpoint]).error("tcp"))
    assert "ERR_NGROK_90301" in error and "deny in on_http_request (on tcp endpoints)" in error


# Once the listeners call the policy's hooks -------------------------------------------


def public(server: BurrowServer, method: str, host: str, path: str = "/", **kwargs: Any) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return httpx.request(method, f"http://{server.http_addr}{path}", headers=headers, timeout=30, **kwargs)


def test_basic_auth(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    password = "correct horse battery"
    agent = start_agent(
        server, token(server), [http_endpoint("auth.example", ["basic_auth", "alice", password])]
    )
    assert "url" in agent.ready["ready"]["web"], agent.ready  # the SDK took the echo without the password
    missing = public(server, "GET", "auth.example")
    assert missing.status_code == 401 and "ERR_NGROK_90401" in missing.text
    assert missing.headers["www-authenticate"].startswith('Basic realm="ngrok"')
    assert public(server, "GET", "auth.example", auth=("alice", "wrong password")).status_code == 401
    assert public(server, "GET", "auth.example", auth=("bob", password)).status_code == 401
    allowed = public(server, "GET", "auth.example", "/x", auth=("alice", password))
    assert allowed.status_code == 200 and allowed.json()["path"] == "/x"
    # The password is in neither the server's log nor its database.
    assert password not in server.log()
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def test_ip_restrictions_on_http(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    endpoints = [
        {**http_endpoint("elsewhere.example", ["allow_cidr", "10.0.0.0/8"]), "name": "elsewhere"},
        {
            **http_endpoint("denied.example", ["allow_cidr", "0.0.0.0/0"], ["deny_cidr", "127.0.0.1/32"]),
            "name": "denied",
        },
        {**http_endpoint("loopback.example", ["allow_cidr", "127.0.0.0/8"]), "name": "loopback"},
    ]
    start_agent(server, token(server), endpoints)
    for host in ("elsewhere.example", "denied.example"):
        refused = public(server, "GET", host)
        assert refused.status_code == 403 and "ERR_NGROK_3205" in refused.text
    assert public(server, "GET", "loopback.example").status_code == 200


def test_tcp_allow_list_excluding_loopback_closes_the_connection(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    endpoint = {"name": "tcp", "kind": "tcp", "options": [["allow_cidr", "10.0.0.0/8"]]}
    agent = start_agent(server, token(server), [endpoint])
    assert "url" in agent.ready["ready"]["tcp"], agent.ready
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as connection:
        try:
            connection.sendall(b"ping")
            received = connection.recv(100)
        except ConnectionResetError:
            received = b""
    assert received == b""  # closed, and nothing echoed by the agent's service
    agent.stop()


def test_tcp_proxy_protocol(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    endpoint = {"name": "tcp", "kind": "tcp", "options": [["proxy_proto", "1"]]}
    agent = start_agent(server, token(server), [endpoint])
    assert "url" in agent.ready["ready"]["tcp"], agent.ready
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as connection:
        connection.sendall(b"ping")
        expected = f"PROXY TCP4 127.0.0.1 127.0.0.1 {connection.getsockname()[1]} {server.tcp_port}\r\nping"
        received = b""
        while len(received) < len(expected):
            chunk = connection.recv(1000)
            if not chunk:
                break
            received += chunk
    assert received.decode() == expected
    agent.stop()


def test_request_and_response_headers(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    options = [
        ["request_header", "x-added", "1"],
        ["remove_request_header", "x-secret"],
        ["response_header", "x-answer", "2"],
        ["remove_response_header", "server"],
    ]
    start_agent(server, token(server), [http_endpoint("headers.example", *options)])
    response = public(server, "GET", "headers.example", "/headers", headers={"X-Secret": "s", "X-Kept": "k"})
    assert response.status_code == 200
    seen = {name.lower(): value for name, value in response.json()["headers"]}
    assert seen["x-added"] == "1" and seen["x-kept"] == "k" and "x-secret" not in seen
    # The local service (Python's http.server) answers with a Server field; the edge removes it.
    assert response.headers["x-answer"] == "2" and "server" not in response.headers


def github_signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_webhook_verification(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    endpoints = [
        {
            **http_endpoint("github.example", ["webhook_verification", "github", "gh-secret"]),
            "name": "github",
        },
        {
            **http_endpoint("slack.example", ["webhook_verification", "slack", "slack-secret"]),
            "name": "slack",
        },
    ]
    agent = start_agent(server, token(server), endpoints)
    assert all("url" in entry for entry in agent.ready["ready"].values()), agent.ready
    body = b'{"zen": "Keep it logically awesome."}' * 100
    digest = hashlib.sha256(body).hexdigest()
    signed = public(
        server,
        "POST",
        "github.example",
        content=body,
        headers={"X-Hub-Signature-256": github_signature(b"gh-secret", body)},
    )
    assert (
        signed.status_code == 200
        and signed.json().items() >= {"received": len(body), "sha256": digest}.items()
    )
    for signature in (github_signature(b"wrong", body), github_signature(b"gh-secret", body[:-1]), None):
        headers = {} if signature is None else {"X-Hub-Signature-256": signature}
        refused = public(server, "POST", "github.example", content=body, headers=headers)
        assert refused.status_code == 403 and "ERR_NGROK_3204" in refused.text

    def slack(secret: bytes, timestamp: int) -> dict[str, str]:
        base = f"v0:{timestamp}:".encode() + body
        return {
            "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest(),
        }

    now = int(time.time())
    signed = public(server, "POST", "slack.example", content=body, headers=slack(b"slack-secret", now))
    assert signed.json().items() >= {"received": len(body), "sha256": digest}.items()
    for headers in (slack(b"wrong", now), slack(b"slack-secret", now - 600)):
        refused = public(server, "POST", "slack.example", content=body, headers=headers)
        assert refused.status_code == 403 and "ERR_NGROK_3204" in refused.text


def test_compression(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    start_agent(server, token(server), [http_endpoint("gzip.example", ["compression"])])
    expected = (bytes(range(256)) * 4096)[:300_000]
    compressed = public(server, "GET", "gzip.example", "/bytes/300000", headers={"Accept-Encoding": "gzip"})
    assert compressed.headers.get("content-encoding") == "gzip" and compressed.content == expected
    plain = public(server, "GET", "gzip.example", "/bytes/300000", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == expected


def test_circuit_breaker(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    start_agent(server, token(server), [http_endpoint("breaker.example", ["circuit_breaker", 0.5])])
    for _ in range(10):
        assert public(server, "GET", "breaker.example", "/status/503").status_code == 503
    tripped = public(server, "GET", "breaker.example", "/")
    assert tripped.status_code == 503 and "ERR_NGROK_3202" in tripped.text


def _issue(
    subject: str, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, is_ca: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    return certificate, key


def _https_get(server: BurrowServer, name: str, client_cert: tuple[Path, Path] | None) -> bytes:
    """GET / over the HTTPS listener with SNI ``name``; what came back (b"" if refused)."""
    context = ssl.create_default_context(cadata=server.ca_path.read_text())
    if client_cert is not None:
        context.load_cert_chain(*client_cert)
    host, port = server.https_addr.rsplit(":", 1)
    answer = b""
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
                while chunk := tls.recv(65536):
                    answer += chunk
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass  # TLS 1.3 reports a refused client certificate at the first read
    return answer


def test_mutual_tls_on_an_https_endpoint(
    server: BurrowServer, start_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    ca, ca_key = _issue("clients ca", None, is_ca=True)
    client, client_key = _issue("client", (ca.subject, ca_key), is_ca=False)
    stranger, stranger_key = _issue("stranger", None, is_ca=False)
    paths = {}
    for label, certificate, key in [("client", client, client_key), ("stranger", stranger, stranger_key)]:
        cert_path, key_path = tmp_path / f"{label}.pem", tmp_path / f"{label}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        paths[label] = (cert_path, key_path)
    name = "mtls.burrow.localhost"
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    endpoint = {**http_endpoint(name, ["mutual_tlsca", ca_pem]), "scheme": "https"}
    agent = start_agent(server, token(server), [endpoint])
    assert agent.url("web").startswith(f"https://{name}:"), agent.ready
    assert _https_get(server, name, paths["client"]).startswith(b"HTTP/1.1 200")
    assert _https_get(server, name, None) == b""
    assert _https_get(server, name, paths["stranger"]) == b""
