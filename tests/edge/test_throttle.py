"""The edge's limits: failed authtokens per client address, session starts per credential."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from burrow.domain import ids, tokens
from burrow.domain.errors import BurrowError
from burrow.edge.control import AgentControl, Authenticated, EdgeSettings
from burrow.store.ratelimit import Rate, Rates, Throttle
from burrow.store.store import Store
from tests.edge.conftest import Agent
from tests.edge.test_control import auth, authenticate, code, credential, make_control
from tests.harness import BurrowServer

OFF = Rates(api_key=None, api_address=None, auth_failures=None, session_starts=None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path)
    yield store
    store.close()


def control(store: Store, **rates: str) -> AgentControl:
    parsed = {name: Rate.parse(text) for name, text in rates.items()}
    return make_control(store, EdgeSettings(), Throttle(replace(OFF, **parsed)))


def refused(edge: AgentControl, token: str, address: str = "127.0.0.1:5555") -> str:
    with pytest.raises(BurrowError) as error:
        authenticate(edge, {"Version": ["2"], "Extra": {"AuthToken": token}}, address)
    return code(error)


def test_session_starts_are_capped_per_credential(store: Store) -> None:
    edge = control(store, session_starts="2/minute")
    _, token, _ = credential(store, [])
    _, other, _ = credential(store, [])
    auth(edge, token)
    auth(edge, token)
    assert refused(edge, token) == "ERR_NGROK_90430"
    auth(edge, other)  # another credential has its own budget


def test_failed_authtokens_are_throttled_per_address(store: Store) -> None:
    edge = control(store, auth_failures="3/minute")
    _, token, _ = credential(store, [])
    forged = tokens.issue(ids.CREDENTIAL).token
    assert [refused(edge, forged) for _ in range(3)] == ["ERR_NGROK_107"] * 3
    assert refused(edge, "not-a-token") == "ERR_NGROK_105"  # the one check a second
    assert {refused(edge, forged) for _ in range(5)} == {"ERR_NGROK_90429"}
    # Unchecked, so even a valid token waits its turn from there (agents retry) ...
    assert refused(edge, token) == "ERR_NGROK_90429"
    # ... but another address is not affected.
    assert auth_from(edge, token, "10.0.0.9:4000").session.credential_id
    assert refused(edge, forged, "10.0.0.9:4000") == "ERR_NGROK_107"


def auth_from(edge: AgentControl, token: str, address: str) -> Authenticated:
    return authenticate(edge, {"Version": ["2"], "Extra": {"AuthToken": token}}, address)


@pytest.mark.e2e
def test_serve_flags_limit_the_api_and_agents(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server("--api-rate-limit", "5/minute", "--agent-session-limit", "1/hour")
    with server.client() as http:
        token = http.post("/credentials", json={}).json()["token"]
        statuses = [http.get("/credentials").status_code for _ in range(5)]
        limited = http.get("/credentials")
    assert statuses == [200, 200, 200, 200, 429]
    assert limited.status_code == 429
    assert limited.json()["error_code"] == "ERR_NGROK_226"
    assert int(limited.headers["Retry-After"]) >= 1
    first = start_agent(server, token, [{"name": "web", "kind": "http", "domain": "one.example"}])
    first.url("web")
    second = start_agent(server, token, [{"name": "web", "kind": "http", "domain": "two.example"}])
    assert "ERR_NGROK_90430" in second.ready["error"]


@pytest.mark.e2e
def test_serve_refuses_a_bad_rate(tmp_path: Path) -> None:
    from tests.harness import burrow

    result = burrow("serve", "--data-dir", str(tmp_path), "--auth-failure-limit", "lots", check=False)
    assert result.returncode == 2
    assert "--auth-failure-limit" in result.stderr
