"""Endpoint options asked for by the unmodified agent SDK, end to end over real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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


def test_traffic_policy_on_tcp_is_refused(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    endpoint = {"name": "tcp", "kind": "tcp", "options": [["traffic_policy", '{"on_tcp_connect": []}']]}
    agent = start_agent(server, token(server), [endpoint])
    error = " ".join(agent.error("tcp"))
    assert "ERR_NGROK_90301" in error and "TrafficPolicy" in error
