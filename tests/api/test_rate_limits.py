"""Rate limits on the API: per API key, per client address, and failed authentication.

In-process (the fast tier), each app with its own throttle and small limits; the flags of
``burrow serve`` and the edge's limits are tested in tests/test_rate_limit_flags.py and
tests/edge/test_throttle.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from burrow.api.app import create_app
from burrow.domain import ids, tokens
from burrow.store.ratelimit import Rate, Rates, Throttle
from tests.harness import AppServer


def rate(text: str) -> Rate:
    parsed = Rate.parse(text)
    assert parsed is not None
    return parsed


OFF = Rates(api_key=None, api_address=None, auth_failures=None, session_starts=None)


@pytest.fixture
def app_with(tmp_path: Path) -> Iterator[Callable[[Rates], AppServer]]:
    made: list[AppServer] = []

    def make(rates: Rates) -> AppServer:
        server = AppServer(tmp_path / f"app{len(made)}")
        server.app = create_app(server.store, throttle=Throttle(rates))
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def client_from(server: AppServer, address: str, api_key: str | None) -> httpx.Client:
    headers = {"Ngrok-Version": "2"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return TestClient(server.app, server.base_url, headers=headers, client=(address, 40000))


def forged_api_key() -> str:
    """Well-formed (its checksum is right) but issued by nobody: answered 203."""
    return tokens.issue(ids.API_KEY).token


def assert_429(response: httpx.Response, code: str) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error_code"] == code
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert body["details"]["retry_after"] == retry
    return retry


def test_each_api_key_has_its_own_budget(app_with: Callable[[Rates], AppServer]) -> None:
    server = app_with(replace(OFF, api_key=rate("3/minute")))
    other = server.create_user("member@example.com")
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert [http.get("/credentials").status_code for _ in range(3)] == [200] * 3
        assert_429(http.get("/credentials"), "ERR_NGROK_226")
        assert "3 API requests per minute" in http.get("/credentials").json()["msg"]
        # Writes count too, and a refused one changes nothing.
        before = server.snapshot()
        assert_429(http.post("/credentials", json={}), "ERR_NGROK_226")
        assert server.snapshot() == before
    with client_from(server, "10.0.0.1", other) as http:
        assert http.get("/credentials").status_code == 200


def test_each_address_has_its_own_budget(app_with: Callable[[Rates], AppServer]) -> None:
    server = app_with(replace(OFF, api_address=rate("4/minute")))
    other = server.create_user("member@example.com")
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert [http.get("/api_keys").status_code for _ in range(4)] == [200] * 4
        assert_429(http.get("/api_keys"), "ERR_NGROK_226")
        # Any key from that address, and requests with no key at all, wait too.
        assert_429(http.get("/api_keys", headers={"Authorization": f"Bearer {other}"}), "ERR_NGROK_226")
    with client_from(server, "10.0.0.1", None) as http:
        assert_429(http.get("/api_keys"), "ERR_NGROK_226")
    with client_from(server, "10.0.0.2", server.api_key) as http:
        assert http.get("/api_keys").status_code == 200


def test_failed_authentication_is_throttled_per_address(app_with: Callable[[Rates], AppServer]) -> None:
    server = app_with(replace(OFF, auth_failures=rate("3/minute")))
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert http.get("/credentials").status_code == 200  # a key in use before the attack
    with client_from(server, "10.0.0.1", None) as attacker:
        # Missing headers are no guesses and do not count.
        assert {attacker.get("/credentials").status_code for _ in range(5)} == {401}
        guesses = [
            attacker.get("/credentials", headers={"Authorization": f"Bearer {forged_api_key()}"})
            for _ in range(3)
        ]
        assert [g.json()["error_code"] for g in guesses] == ["ERR_NGROK_203"] * 3
        # Over the budget, tokens are checked at most once a second: the rest wait unchecked.
        answers = [
            attacker.get("/credentials", headers={"Authorization": f"Bearer {forged_api_key()}"})
            for _ in range(10)
        ]
        codes = [a.json()["error_code"] for a in answers]
        assert codes.count("ERR_NGROK_90429") >= 8, codes
        assert set(codes) <= {"ERR_NGROK_203", "ERR_NGROK_90429"}
        assert_429(next(a for a in answers if a.status_code == 429), "ERR_NGROK_90429")
    # A key that authenticated since the last write is recognised without a check: not throttled.
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert [http.get("/credentials").status_code for _ in range(5)] == [200] * 5
    # Another address is not affected.
    with client_from(server, "10.0.0.2", forged_api_key()) as http:
        assert http.get("/credentials").json()["error_code"] == "ERR_NGROK_203"


def test_a_valid_key_from_a_throttled_address_still_gets_in(app_with: Callable[[Rates], AppServer]) -> None:
    server = app_with(replace(OFF, auth_failures=rate("2/minute")))
    fresh = server.create_user("member@example.com")  # never used: not recognised
    with client_from(server, "10.0.0.1", forged_api_key()) as attacker:
        for _ in range(4):
            attacker.get("/credentials")
    with client_from(server, "10.0.0.1", fresh) as http:
        deadline = time.monotonic() + 5
        response = http.get("/credentials")
        while response.status_code == 429 and time.monotonic() < deadline:
            time.sleep(int(response.headers["Retry-After"]))
            response = http.get("/credentials")
        assert response.status_code == 200, response.text
        # Recognised from then on, until the next write.
        assert [http.get("/credentials").status_code for _ in range(5)] == [200] * 5


def test_a_guesser_cannot_spend_the_checks_of_a_key_used_before(
    app_with: Callable[[Rates], AppServer],
) -> None:
    """Writes clear the read cache, so a known key is checked again; a guesser behind the same
    address, whose guesses keep the throttle's one check a second busy, must not crowd it out."""
    server = app_with(replace(OFF, auth_failures=rate("2/minute")))
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert http.get("/credentials").status_code == 200  # authenticated once
    statuses: list[int] = []
    with (
        client_from(server, "10.0.0.1", forged_api_key()) as attacker,
        client_from(server, "10.0.0.1", server.api_key) as http,
    ):
        for n in range(12):
            attacker.get("/credentials")
            attacker.get("/credentials")
            # A write: the read cache is cleared, the key must be checked again.
            made = http.post("/credentials", json={"description": f"c{n}"})
            statuses.append(made.status_code)
            statuses.append(http.get("/credentials").status_code)
        guesses = [attacker.get("/credentials").status_code for _ in range(5)]
    assert statuses == [201, 200] * 12, statuses
    assert guesses.count(429) >= 4, guesses
    # A deleted key is checked like any other and fails.
    other = server.create_user("gone@example.com")
    with client_from(server, "10.0.0.3", other) as http:
        assert http.get("/credentials").status_code == 200
    key_id = tokens.resource_id(other, ids.API_KEY)
    with client_from(server, "10.0.0.1", server.api_key) as admin:
        assert admin.delete(f"/api_keys/{key_id}").status_code == 204
    with client_from(server, "10.0.0.3", other) as http:
        assert http.get("/credentials").json()["error_code"] == "ERR_NGROK_203"


def test_limits_off_let_everything_through(app_with: Callable[[Rates], AppServer]) -> None:
    server = app_with(OFF)
    with client_from(server, "10.0.0.1", server.api_key) as http:
        assert {http.get("/bot_users").status_code for _ in range(50)} == {200}
    with client_from(server, "10.0.0.1", forged_api_key()) as http:
        assert {http.get("/bot_users").status_code for _ in range(50)} == {401}


def test_the_defaults_do_not_bite_a_busy_client(app_server: AppServer) -> None:
    """A few hundred requests in a burst, as a CI suite makes, with the default limits."""
    with app_server.client() as http:
        statuses = {http.get("/credentials").status_code for _ in range(300)}
    assert statuses == {200}


def test_rates_parse() -> None:
    assert str(rate("600/minute")) == "600/minute"
    assert str(rate("10 per 5 minutes")) == "10/5 minutes"
    assert Rate.parse("off") is None
    for bad in ("often", "0/minute", "5/fortnight"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_workers_share_each_rate_so_the_machine_never_admits_more() -> None:
    # burrow serve --workers N: each worker counts apart, so each enforces rate // N.
    per_minute = Rate.parse("60/minute")
    assert per_minute is not None
    assert str(per_minute.shared_by(2)) == "30/minute"
    assert str(per_minute.shared_by(7)) == "8/minute"  # 7 x 8 = 56 <= 60
    assert str(per_minute.shared_by(1)) == "60/minute"
    five_minutes = Rate.parse("3 per 5 minutes")
    assert five_minutes is not None
    assert str(five_minutes.shared_by(4)) == "1/5 minutes"  # at least one event each
