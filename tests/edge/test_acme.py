"""ACME end to end: Burrow orders certificates from a real ACME CA (Debian's pebble), the CA
validates by HTTP-01 or TLS-ALPN-01 against Burrow's own listeners, and curl verifies what
Burrow then serves against pebble's root. The reserved domains are made, and their status
read, by the official Python client (ngrok-api)."""

from __future__ import annotations

import datetime
import json
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from burrow.store.store import Store
from tests.acme_ca import Pebble, PebbleRun, curl, start_knot, start_pebble
from tests.api.test_official_client import run_official
from tests.edge.test_cluster import ClusterNode
from tests.harness import BurrowServer, free_port

pytestmark = pytest.mark.e2e

DOMAIN = "shop.example.com"


@pytest.fixture
def ports() -> tuple[int, int]:
    """Burrow's HTTP and HTTPS listener ports: pebble validates challenges on them."""
    return free_port(), free_port()


@pytest.fixture
def pebble(tmp_path: Path, ports: tuple[int, int]) -> Iterator[Pebble]:
    with start_pebble(PebbleRun(tmp_path / "pebble", *ports)) as ca:
        yield ca


def acme_server(
    make_server: Callable[..., BurrowServer], pebble: Pebble, ports: tuple[int, int], *extra: str
) -> BurrowServer:
    http_port, https_port = ports
    return make_server(
        *pebble.burrow_args(),
        "--http-addr",
        f"127.0.0.1:{http_port}",
        "--https-addr",
        f"127.0.0.1:{https_port}",
        *extra,
    )


def create_managed(server: BurrowServer, domain: str, key_type: str = "ecdsa") -> dict[str, Any]:
    """The official client reserves ``domain`` with a certificate_management_policy."""
    return run_official(
        server,
        f"""
        from ngrok.datatypes import ReservedDomainCertPolicy
        props = {{"authority": "letsencrypt", "private_key_type": "{key_type}"}}
        policy = ReservedDomainCertPolicy(client, props)
        domain = client.reserved_domains.create(domain="{domain}", certificate_management_policy=policy)
        out["created"] = {{
            "id": domain.id,
            "policy": domain.certificate_management_policy._props,
        }}
        """,
    )["created"]


def read_status(server: BurrowServer, domain_id: str) -> dict[str, Any]:
    """What the official client reads back: certificate and certificate_management_status."""
    return run_official(
        server,
        f"""
        domain = client.reserved_domains.get("{domain_id}")
        status = domain.certificate_management_status
        job = status.provisioning_job if status is not None else None
        out["status"] = {{
            "renews_at": status.renews_at if status is not None else None,
            "job": None if job is None else {{
                "error_code": job.error_code, "msg": job.msg,
                "started_at": job.started_at, "retries_at": job.retries_at,
            }},
            "certificate": None if domain.certificate is None else {{
                "id": domain.certificate.id, "uri": domain.certificate.uri,
            }},
        }}
        """,
    )["status"]


def wait_for(server: BurrowServer, domain_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while True:
        with server.client() as api:
            body = api.get(f"/reserved_domains/{domain_id}").json()
        if done(body):
            return body  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached: {json.dumps(body)}\n{server.log()[-5000:]}")
        time.sleep(0.5)


def challenge_requests(server: BurrowServer) -> list[dict[str, Any]]:
    return [
        e
        for e in server.log_entries()
        if e.get("message") == "traffic" and str(e.get("path", "")).startswith("/.well-known/acme-challenge/")
    ]


def issued(body: dict[str, Any]) -> bool:
    return body.get("certificate") is not None


def test_http01_for_a_reserved_domain(
    make_server: Callable[..., BurrowServer], pebble: Pebble, ports: tuple[int, int]
) -> None:
    server = acme_server(make_server, pebble, ports)
    https_port = ports[1]
    # Before: no certificate chaining to pebble's root is served for the name.
    before = curl(f"https://{DOMAIN}:{https_port}/", pebble.root(), f"{DOMAIN}:{https_port}:127.0.0.1")
    assert before.returncode != 0

    created = create_managed(server, DOMAIN)
    assert created["policy"] == {"authority": "letsencrypt", "private_key_type": "ecdsa"}
    body = wait_for(server, created["id"], issued)

    status = read_status(server, created["id"])
    assert status["certificate"]["id"].startswith("cert_")
    assert status["certificate"]["uri"].endswith(f"/tls_certificates/{status['certificate']['id']}")
    assert status["renews_at"] is not None and status["job"] is None
    # The issued certificate is a /tls_certificates row of the account, for that name, by pebble.
    with server.client() as api:
        certificate = api.get(f"/tls_certificates/{body['certificate']['id']}").json()
    assert certificate["subject_alternative_names"]["dns_names"] == [DOMAIN]
    assert certificate["private_key_type"] == "ecdsa"
    assert "Pebble" in certificate["issuer_common_name"]
    assert "private_key_pem" not in certificate
    # Its key is sealed as an upload's is: the store opens it, and it is the leaf's.
    store = Store.open(server.data_dir)
    try:
        (account_id, _), *_ = store.accounts()
        held = store.tls_certificate_key(account_id, certificate["id"])
    finally:
        store.close()
    assert held is not None
    key = serialization.load_pem_private_key(held[1], None)
    leaf = x509.load_pem_x509_certificate(held[0].encode())
    assert key.public_key() == leaf.public_key()

    # Served by SNI, verifying against pebble's root only.
    served = curl(f"https://{DOMAIN}:{https_port}/", pebble.root(), f"{DOMAIN}:{https_port}:127.0.0.1")
    assert served.returncode == 0, served.stderr
    assert "ERR_NGROK" in served.stdout  # Burrow's page: no tunnel is bound to the name yet
    assert any(e.get("message") == "certificate issued" for e in server.log_entries())
    # Pebble fetched the key authorization from the HTTP listener (the traffic log says so).
    statuses = [e["status"] for e in challenge_requests(server)]
    assert statuses and set(statuses) == {200}, statuses  # pebble asks from several vantage points


def test_policy_is_checked(
    make_server: Callable[..., BurrowServer], pebble: Pebble, ports: tuple[int, int]
) -> None:
    server = acme_server(make_server, pebble, ports)
    with server.client() as api:
        bad = api.post(
            "/reserved_domains",
            json={"domain": "bad.example.com", "certificate_management_policy": {"private_key_type": "dsa"}},
        )
        assert bad.status_code == 400 and bad.json()["error_code"] == "ERR_NGROK_215"
        assert api.get("/reserved_domains").json()["reserved_domains"] == []
        plain = api.post("/reserved_domains", json={"domain": "plain.example.com"}).json()
    assert plain["certificate_management_policy"] is None
    assert plain["certificate_management_status"] is None and plain["certificate"] is None


def test_tls_alpn01_for_a_reserved_domain_with_an_rsa_key(
    make_server: Callable[..., BurrowServer], pebble: Pebble, ports: tuple[int, int]
) -> None:
    server = acme_server(make_server, pebble, ports, "--acme-challenge", "tls-alpn-01")
    https_port = ports[1]
    created = create_managed(server, "tls.example.com", key_type="rsa")
    body = wait_for(server, created["id"], issued)
    with server.client() as api:
        certificate = api.get(f"/tls_certificates/{body['certificate']['id']}").json()
    assert certificate["private_key_type"] == "rsa"
    assert certificate["subject_alternative_names"]["dns_names"] == ["tls.example.com"]
    # Pebble validated on the HTTPS listener: no HTTP-01 request reached the HTTP listener.
    assert challenge_requests(server) == []
    served = curl(
        f"https://tls.example.com:{https_port}/", pebble.root(), f"tls.example.com:{https_port}:127.0.0.1"
    )
    assert served.returncode == 0, served.stderr
    # Ordinary handshakes (no acme-tls/1) are not answered with a challenge certificate.
    other = curl(
        f"https://other.example.com:{https_port}/", pebble.root(), f"other.example.com:{https_port}:127.0.0.1"
    )
    assert other.returncode != 0


def served_serial(port: int, name: str, root: Path) -> int:
    """The serial of the certificate the HTTPS listener serves for ``name``, verified by ``root``."""
    context = ssl.create_default_context(cafile=str(root))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_failing_challenge_is_reported_with_backoff(
    make_server: Callable[..., BurrowServer], tmp_path: Path, ports: tuple[int, int]
) -> None:
    """Pebble validates HTTP-01 on a port where nothing listens: every order fails."""
    closed = free_port()
    with start_pebble(PebbleRun(tmp_path / "failing", closed, ports[1])) as ca:
        server = acme_server(make_server, ca, ports, "--acme-retry-seconds", "2")
        created = create_managed(server, "fail.example.com")

        def failed_once(body: dict[str, Any]) -> bool:
            job = (body["certificate_management_status"] or {}).get("provisioning_job")
            return bool(job and job["error_code"])

        wait_for(server, created["id"], failed_once)
        first = read_status(server, created["id"])
        job = first["job"]
        assert job["error_code"] == "ERR_NGROK_90480"
        assert "fail.example.com" in job["msg"] and "connection" in job["msg"]
        assert first["certificate"] is None and first["renews_at"] is None

        def stamp(text: str) -> datetime.datetime:
            return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))

        first_gap = stamp(job["retries_at"]) - stamp(job["started_at"])
        assert datetime.timedelta(seconds=2) <= first_gap < datetime.timedelta(seconds=30)
        # Nothing is ordered again before retries_at; then the next failure waits twice as long.
        wait_for(
            server,
            created["id"],
            lambda body: (
                body["certificate_management_status"]["provisioning_job"]["started_at"] != job["started_at"]
                and body["certificate_management_status"]["provisioning_job"]["retries_at"]
                != job["retries_at"]
            ),
        )
        second = read_status(server, created["id"])["job"]
        assert stamp(second["started_at"]) >= stamp(job["retries_at"])
        second_gap = stamp(second["retries_at"]) - stamp(second["started_at"])
        assert second_gap >= datetime.timedelta(seconds=4) and second_gap > first_gap - datetime.timedelta(
            seconds=1
        )
        orders = [e for e in server.log_entries() if e.get("message") == "ordering a certificate"]
        assert len(orders) == 2, orders


def test_renewal_when_the_certificate_nears_expiry(
    make_server: Callable[..., BurrowServer], tmp_path: Path, ports: tuple[int, int]
) -> None:
    """Pebble issues certificates valid for 30 seconds: Burrow renews at two thirds (20 s)."""
    with start_pebble(PebbleRun(tmp_path / "short", *ports, validity_seconds=30)) as ca:
        server = acme_server(make_server, ca, ports)
        created = create_managed(server, "renew.example.com")
        body = wait_for(server, created["id"], issued)
        first_id = body["certificate"]["id"]
        with server.client() as api:
            first = api.get(f"/tls_certificates/{first_id}").json()
        not_before = datetime.datetime.fromisoformat(first["not_before"].replace("Z", "+00:00"))
        not_after = datetime.datetime.fromisoformat(first["not_after"].replace("Z", "+00:00"))
        renews_at = body["certificate_management_status"]["renews_at"]
        expected = not_before + (not_after - not_before) * 2 / 3
        got = datetime.datetime.fromisoformat(renews_at.replace("Z", "+00:00"))
        assert abs(got - expected) <= datetime.timedelta(seconds=1)
        serial = served_serial(ports[1], "renew.example.com", ca.root())
        assert serial == int(first["serial_number"], 16)

        renewed = wait_for(server, created["id"], lambda b: b["certificate"]["id"] != first_id)
        with server.client() as api:
            second = api.get(f"/tls_certificates/{renewed['certificate']['id']}").json()
            assert api.get(f"/tls_certificates/{first_id}").status_code == 404  # replaced
        assert second["not_after"] > first["not_after"]
        deadline = time.monotonic() + 10
        while served_serial(ports[1], "renew.example.com", ca.root()) != int(second["serial_number"], 16):
            assert time.monotonic() < deadline, "the renewed certificate is not served"
            time.sleep(0.25)


def test_dns01_for_the_wildcard_through_rfc2136(
    make_server: Callable[..., BurrowServer], tmp_path: Path, ports: tuple[int, int]
) -> None:
    """Knot is authoritative for the server's --domain and pebble's resolver: Burrow adds the
    _acme-challenge TXT record by a TSIG-signed update, pebble looks it up there."""
    zone = "burrow.test"
    with start_knot(tmp_path / "knot", zone) as knot:
        run = PebbleRun(tmp_path / "pebble", free_port(), free_port(), dns_server=knot.address)
        with start_pebble(run) as ca:
            server = acme_server(
                make_server,
                ca,
                ports,
                "--domain",
                zone,
                "--dns-update-server",
                knot.address,
                "--dns-tsig-key",
                knot.tsig,
            )
            entry = server.wait_log(
                lambda e: e.get("message") in ("certificate issued", "certificate order failed"), timeout=90
            )
            assert entry["message"] == "certificate issued" and entry["name"] == f"*.{zone}", entry
            # Any name under --domain, verified against pebble's root alone.
            for name in (f"app.{zone}", f"other.{zone}"):
                deadline = time.monotonic() + 10
                while True:
                    served = curl(f"https://{name}:{ports[1]}/", ca.root(), f"{name}:{ports[1]}:127.0.0.1")
                    if served.returncode == 0 or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
                assert served.returncode == 0, served.stderr
            # The challenge's TXT record was removed again (by another signed update).
            import dns.message
            import dns.query

            host, port = knot.address.split(":")
            answer = dns.query.udp(
                dns.message.make_query(f"_acme-challenge.{zone}.", "TXT"), host, port=int(port), timeout=2
            )
            assert answer.answer == []
            # The secret never reaches the log.
            assert knot.tsig.rsplit(":", 1)[1] not in server.log()


def test_two_nodes_on_postgresql_serve_one_certificate_from_one_order(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node A orders; pebble validates HTTP-01 on node B's listener, which answers from the
    database; both serve the one certificate. B looks for names to order only at its start
    (--acme-check-seconds 3600), before the domain exists, so the order is A's."""
    monkeypatch.setenv("BURROW_DATABASE_URL", postgres_url)
    monkeypatch.setenv("BURROW_SECRET_KEY", secrets.token_hex(32))
    a_ports, b_ports = (free_port(), free_port()), (free_port(), free_port())
    nodes: list[BurrowServer] = []
    try:
        with start_pebble(PebbleRun(tmp_path / "pebble", *b_ports)) as ca:

            def options(ports: tuple[int, int], check: str) -> list[str]:
                given = [*ca.burrow_args(), "--lease-seconds", "3"]
                given[given.index("--acme-check-seconds") + 1] = check
                return [
                    *given,
                    "--http-addr",
                    f"127.0.0.1:{ports[0]}",
                    "--https-addr",
                    f"127.0.0.1:{ports[1]}",
                ]

            a = BurrowServer(tmp_path / "node0")
            nodes.append(a.start(*options(a_ports, "0.5"), "--node-name", "a"))
            b = ClusterNode(tmp_path / "node1", a.api_key)
            nodes.append(b.start(*options(b_ports, "3600"), "--node-name", "b"))
            created = create_managed(b, "both.example.com")  # through either node's API
            body = wait_for(a, created["id"], issued)
            serial = None
            for node, (_, https_port) in ((a, a_ports), (b, b_ports)):
                deadline = time.monotonic() + 15
                while True:
                    try:
                        got = served_serial(https_port, "both.example.com", ca.root())
                        break
                    except (ssl.SSLError, OSError):
                        assert time.monotonic() < deadline, f"{node.data_dir.name} serves no certificate"
                        time.sleep(0.25)
                serial = serial or got
                assert got == serial  # the same certificate on both nodes
            with b.client() as api:
                certificate = api.get(f"/tls_certificates/{body['certificate']['id']}").json()
            assert int(certificate["serial_number"], 16) == serial
            orders = {
                node.data_dir.name: [
                    e for e in node.log_entries() if e.get("message") == "ordering a certificate"
                ]
                for node in nodes
            }
            assert len(orders["node0"]) == 1 and orders["node1"] == [], orders
            # The CA's validation reached node B only, which answered it.
            assert challenge_requests(a) == []
            assert challenge_requests(b) and {e["status"] for e in challenge_requests(b)} == {200}
    finally:
        for node in nodes:
            node.stop()


def agent_serial(server: BurrowServer, name: str, root: Path) -> int:
    """The serial of the agent listener's certificate for ``name``, verified against ``root`` only."""
    host, port = server.agent_addr.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(root))
    raw = socket.create_connection((host, int(port)), timeout=5)
    with context.wrap_socket(raw, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_dns01_for_the_agent_listeners_name_reloaded_on_renewal(
    make_server: Callable[..., BurrowServer], tmp_path: Path, ports: tuple[int, int]
) -> None:
    """The agent listener's name (connect.DOMAIN, derived from --domain) is ordered by DNS-01
    through knot; the listener serves it, verified against pebble's root, and serves the
    renewed certificate (pebble's last 30 s, renewed at 20 s) to new connections without a
    restart."""
    zone = "burrow.test"
    name = f"connect.{zone}"
    with start_knot(tmp_path / "knot", zone) as knot:
        run = PebbleRun(
            tmp_path / "pebble", free_port(), free_port(), dns_server=knot.address, validity_seconds=30
        )
        with start_pebble(run) as ca:
            server = acme_server(
                make_server, ca, ports, "--domain", zone, "--dns-update-server", knot.address,
                "--dns-tsig-key", knot.tsig,
            )  # fmt: skip
            server.wait_log(lambda e: e.get("message") == "agent listener certificate loaded", timeout=90)
            first = agent_serial(server, name, ca.root())
            issued_names = [
                e["name"] for e in server.log_entries() if e.get("message") == "certificate issued"
            ]
            assert name in issued_names and f"*.{zone}" in issued_names, issued_names
            deadline = time.monotonic() + 60
            while (second := agent_serial(server, name, ca.root())) == first:
                assert time.monotonic() < deadline, "the renewed certificate is not served"
                time.sleep(0.5)
            assert second != first
            # One listener all along: the edge started listening once.
            assert sum(e.get("message") == "edge listening" for e in server.log_entries()) == 1
            assert knot.tsig.rsplit(":", 1)[1] not in server.log()
