"""A reserved domain's certificate_id end to end: the official Python client (ngrok-api)
uploads a certificate signed by a test CA and reserves a domain with it, the PyPI SDK starts
an HTTPS tunnel on the domain, and a client trusting only the test CA gets that certificate
by SNI and the tunnel's answer. Choosing another certificate is served to new connections
without a restart."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from tests.api.test_official_client import run_official
from tests.certs import Made, SigningCa, make_ca, make_certificate
from tests.edge.conftest import Agent
from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e

DOMAIN = "shop.example.com"


def fetch(server: BurrowServer, ca: SigningCa) -> tuple[int, str]:
    """(serial of the certificate served for DOMAIN, verified against ``ca`` only; the answer to GET /)."""
    context = ssl.create_default_context(cadata=ca.pem())
    port = int(server.https_addr.rsplit(":", 1)[1])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(f"GET /hello HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return x509.load_der_x509_certificate(der).serial_number, answer.decode(errors="replace")


def serial(made: Made) -> int:
    return x509.load_pem_x509_certificate(made.certificate_pem.encode()).serial_number


def served_within(server: BurrowServer, ca: SigningCa, wanted: int, seconds: float = 20) -> str:
    deadline = time.monotonic() + seconds
    seen: Any = None
    while time.monotonic() < deadline:
        try:
            got, answer = fetch(server, ca)
        except (OSError, ssl.SSLError) as problem:
            seen = problem
        else:
            if got == wanted:
                return answer
            seen = got
        time.sleep(0.3)
    raise AssertionError(f"certificate {wanted} not served; last: {seen!r}\n{server.log()[-3000:]}")


def test_uploaded_certificate_is_served_for_its_reserved_domain(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server()
    ca = make_ca()
    first, second = (make_certificate((DOMAIN,), issuer=ca) for _ in range(2))
    out = run_official(
        server,
        f"""
        first = json.loads({json.dumps(json.dumps(first.__dict__))})
        cert = client.tls_certificates.create(
            certificate_pem=first["certificate_pem"], private_key_pem=first["private_key_pem"]
        )
        domain = client.reserved_domains.create(domain="{DOMAIN}", certificate_id=cert.id)
        out["cert"] = cert.id
        out["domain"] = domain.id
        out["certificate"] = {{"id": domain.certificate.id, "uri": domain.certificate.uri}}
        out["in_use"] = error(lambda: client.tls_certificates.delete(cert.id))
        """,
    )
    assert out["certificate"]["id"] == out["cert"]
    assert out["certificate"]["uri"] == f"{server.base_url}/tls_certificates/{out['cert']}"
    assert out["in_use"]["code"] == "ERR_NGROK_90451" and out["in_use"]["status"] == 400

    with server.client() as http:
        token = http.post("/credentials", json={"acl": []}).json()["token"]
    agent = start_agent(server, token, [{"name": "web", "kind": "http", "domain": DOMAIN, "scheme": "https"}])
    assert agent.url("web").startswith(f"https://{DOMAIN}:")
    answer = served_within(server, ca, serial(first))
    assert answer.startswith("HTTP/1.1 200"), answer
    assert '"service": "http"' in answer and '"path": "/hello"' in answer

    # Another certificate chosen: new connections get it, the listener was not restarted.
    out = run_official(
        server,
        f"""
        second = json.loads({json.dumps(json.dumps(second.__dict__))})
        cert = client.tls_certificates.create(
            certificate_pem=second["certificate_pem"], private_key_pem=second["private_key_pem"]
        )
        domain = client.reserved_domains.update("{out["domain"]}", certificate_id=cert.id)
        out["certificate"] = domain.certificate.id
        out["cert"] = cert.id
        client.tls_certificates.delete("{out["cert"]}")
        """,
    )
    assert out["certificate"] == out["cert"]
    answer = served_within(server, ca, serial(second))
    assert answer.startswith("HTTP/1.1 200"), answer
