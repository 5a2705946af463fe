"""``burrow serve --trusted-proxies``: uvicorn's own trust of 127.0.0.1 is off; only the
proxies named count X-Forwarded-For, in rate limits, the audit trail and the access log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e


def access_clients(server: BurrowServer, path: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if '"burrow.access"' in line]
        clients = [line["client"] for line in lines if line["path"] == path]
        if clients or time.monotonic() > deadline:
            return clients
        time.sleep(0.1)


def test_local_clients_cannot_pick_their_address_by_default(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server("--api-address-rate-limit", "3/minute")
    with server.client() as http:
        statuses = [
            http.get("/credentials", headers={"X-Forwarded-For": f"198.51.100.{n}"}).status_code
            for n in range(4)
        ]
    assert statuses == [200, 200, 200, 429]
    clients = access_clients(server, "/credentials")
    assert len(clients) == 4 and all(c.startswith("127.0.0.1:") for c in clients), clients


def test_a_trusted_proxy_names_the_client(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server("--api-address-rate-limit", "3/minute", "--trusted-proxies", "127.0.0.1/32")
    with server.client() as http:
        one = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}
        assert [http.get("/credentials", headers=one).status_code for _ in range(4)] == [200] * 3 + [429]
        other = {"X-Forwarded-For": "198.51.100.2"}
        assert http.post("/credentials", json={"description": "x"}, headers=other).status_code == 201
        event = http.get("/audit_events", headers=other).json()["audit_events"][0]
    assert event["client_ip"] == "198.51.100.2"
    assert access_clients(server, "/credentials") == ["198.51.100.1:0"] * 4 + ["198.51.100.2:0"]


def test_without_trust_the_audit_trail_records_the_real_peer(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server("--trusted-proxies", "10.0.0.0/8")
    with server.client() as http:
        forged = {"X-Forwarded-For": "198.51.100.1"}
        assert http.post("/credentials", json={"description": "x"}, headers=forged).status_code == 201
        event = http.get("/audit_events").json()["audit_events"][0]
    assert event["client_ip"] == "127.0.0.1"


def test_advertised_ports_and_bad_proxies_are_checked() -> None:
    from burrow.cli.node import CommandError
    from burrow.cli.serving import advertise, proxies
    from burrow.edge.control import EdgeSettings

    settings = advertise(EdgeSettings(), "http=80,https=8443")
    assert (settings.http_url_port, settings.https_url_port, settings.tls_url_port) == (None, 8443, 8443)
    for bad in ("ftp=21", "http=0", "http"):
        with pytest.raises(CommandError):
            advertise(EdgeSettings(), bad)
    with pytest.raises(CommandError):
        proxies("10.0.0.1/8")
