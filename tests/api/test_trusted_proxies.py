"""X-Forwarded-For counts only from --trusted-proxies: rate limits, audit trail, dashboard.

In process (the fast tier); tests/test_trusted_proxies_serve.py runs the same against a real
``burrow serve``, whose access log is checked there too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from burrow.cli.node import api_with_dashboard
from burrow.dashboard import DashboardSettings
from burrow.domain.forwarded import TrustedProxies
from burrow.store.ratelimit import Rates, Throttle
from tests.api.test_rate_limits import OFF, assert_429, forged_api_key, rate
from tests.harness import AppServer

PROXY = "10.0.0.5"


@pytest.fixture
def app_with(tmp_path: Path) -> Iterator[Callable[[Rates, str], AppServer]]:
    made: list[AppServer] = []

    def make(rates: Rates, trusted: str = f"{PROXY}/32") -> AppServer:
        server = AppServer(tmp_path / f"app{len(made)}")
        server.app = api_with_dashboard(
            server.store,
            DashboardSettings(),
            throttle=Throttle(rates),
            trusted_proxies=TrustedProxies.parse(trusted),
        )
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def client(
    server: AppServer, peer: str, api_key: str | None = None, forwarded: str | None = None
) -> httpx.Client:
    headers = {"Ngrok-Version": "2"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    return TestClient(server.app, server.base_url, headers=headers, client=(peer, 40000))


def test_forwarded_for_from_an_untrusted_peer_changes_nothing(
    app_with: Callable[[Rates, str], AppServer],
) -> None:
    server = app_with(replace(OFF, api_address=rate("3/minute")), f"{PROXY}/32")
    # Each request claims another address; all count as the peer's.
    statuses = []
    for n in range(4):
        with client(server, "192.0.2.1", server.api_key, forwarded=f"198.51.100.{n}") as http:
            statuses.append(http.get("/api_keys").status_code)
    assert statuses == [200, 200, 200, 429]
    with client(server, "192.0.2.2", server.api_key) as http:
        created = http.post("/credentials", json={"description": "x"})
        assert created.status_code == 201
    with client(server, "192.0.2.3", server.api_key, forwarded="198.51.100.9") as http:
        assert http.delete(f"/credentials/{created.json()['id']}").status_code == 204
        events = http.get("/audit_events").json()["audit_events"]
    assert [e["client_ip"] for e in events[:2]] == ["192.0.2.3", "192.0.2.2"]


def test_forwarded_for_from_a_trusted_proxy_is_the_client(
    app_with: Callable[[Rates, str], AppServer],
) -> None:
    server = app_with(replace(OFF, api_address=rate("3/minute")), f"{PROXY}/32")
    with client(server, PROXY, server.api_key, forwarded="6.6.6.6, 198.51.100.1") as http:
        assert [http.get("/api_keys").status_code for _ in range(3)] == [200] * 3
        assert_429(http.get("/api_keys"), "ERR_NGROK_226")
        # The forged left-most entry is not the client: changing it changes nothing.
        assert_429(
            http.get("/api_keys", headers={"X-Forwarded-For": "7.7.7.7, 198.51.100.1"}), "ERR_NGROK_226"
        )
        # Another client behind the same proxy has its own budget, and the audit names it.
        other = {"X-Forwarded-For": "198.51.100.2"}
        created = http.post("/credentials", json={"description": "x"}, headers=other)
        assert created.status_code == 201, created.text
        events = http.get("/audit_events", headers=other).json()["audit_events"]
    assert events[0]["client_ip"] == "198.51.100.2"


def test_failed_authentication_is_throttled_per_forwarded_client(
    app_with: Callable[[Rates, str], AppServer],
) -> None:
    server = app_with(replace(OFF, auth_failures=rate("2/minute")), "10.0.0.0/8")
    fresh = server.create_user("member@example.com")  # never used: not recognised, so checked
    with client(server, PROXY, forged_api_key(), forwarded="198.51.100.1") as attacker:
        codes = [attacker.get("/credentials").json()["error_code"] for _ in range(5)]
    assert "ERR_NGROK_90429" in codes
    with client(server, PROXY, fresh, forwarded="198.51.100.2") as http:
        assert http.get("/credentials").status_code == 200


def sign_in(server: AppServer, peer: str, api_key: str, forwarded: str | None = None) -> httpx.Response:
    with client(server, peer, forwarded=forwarded) as http:
        page = http.get("/dashboard/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        return http.post(
            "/dashboard/signin",
            data={"csrf": csrf.group(1), "api_key": api_key},
            headers={"Origin": server.base_url},
            follow_redirects=False,
        )


def test_a_dashboard_sign_in_counts_as_the_browser_not_as_the_server_itself(
    app_with: Callable[[Rates, str], AppServer],
) -> None:
    server = app_with(replace(OFF, auth_failures=rate("2/minute")), f"{PROXY}/32")
    fresh = [server.create_user(f"m{n}@example.com") for n in range(2)]
    answers = [sign_in(server, "192.0.2.1", forged_api_key()) for _ in range(5)]
    assert all(a.status_code == 401 for a in answers)
    assert "ERR_NGROK_90429" in answers[-1].text
    # That browser is throttled; one at another address signs in at once (before, every
    # sign-in counted as 127.0.0.1, the dashboard's own calls, and waited too).
    assert sign_in(server, "192.0.2.2", fresh[0]).status_code == 303
    # Behind the trusted proxy, the browser's forwarded address is the one counted.
    assert sign_in(server, PROXY, fresh[1], forwarded="192.0.2.3").status_code == 303
    throttled = sign_in(server, PROXY, forged_api_key(), forwarded="192.0.2.1")
    assert "ERR_NGROK_90429" in throttled.text
