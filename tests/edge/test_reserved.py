"""Reserved names at the edge, with the real agent SDK: only the reserving account binds them,
and under --require-reservation fixed names under --domain must be reserved first."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.edge.conftest import Agent
from tests.edge.test_sdk import public_get
from tests.harness import BurrowServer


@pytest.fixture
def two_accounts(make_server: Callable[..., BurrowServer]) -> Iterator[tuple[BurrowServer, str]]:
    server = make_server()
    yield server, server.new_account("other@example.com")


def credential(
    server: BurrowServer, api_key: str | None = None, acl: list[str] | None = None
) -> dict[str, Any]:
    with server.client(api_key) as http:
        response = http.post("/credentials", json={"acl": acl or []})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def reserve(server: BurrowServer, path: str, body: dict[str, str]) -> dict[str, Any]:
    with server.client() as http:
        response = http.post(path, json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def test_another_accounts_reserved_domain_is_refused(
    two_accounts: tuple[BurrowServer, str], start_agent: Callable[..., Agent]
) -> None:
    server, other_key = two_accounts
    reserve(server, "/reserved_domains", {"domain": "shop.example"})
    # Account B's credential may bind anything by its ACL; the reservation still wins.
    theirs = start_agent(
        server,
        credential(server, other_key, ["bind:*"])["token"],
        [{"name": "web", "kind": "http", "domain": "shop.example"}],
    )
    assert "ERR_NGROK_320" in theirs.error("web")
    assert public_get(server, "shop.example").status_code == 404
    mine = start_agent(
        server, credential(server)["token"], [{"name": "web", "kind": "http", "domain": "shop.example"}]
    )
    assert mine.url("web").startswith("http://shop.example:")
    assert public_get(server, "shop.example").json()["host"] == "shop.example"


def test_another_accounts_reserved_address_is_refused(
    two_accounts: tuple[BurrowServer, str], start_agent: Callable[..., Agent]
) -> None:
    server, other_key = two_accounts
    addr = reserve(server, "/reserved_addrs", {})["addr"]  # the only port the test server has
    theirs = start_agent(
        server,
        credential(server, other_key)["token"],
        [{"name": "fixed", "kind": "tcp", "remote_addr": addr}, {"name": "random", "kind": "tcp"}],
    )
    assert "ERR_NGROK_90320" in theirs.error("fixed")
    assert "ERR_NGROK_307" in theirs.error("random")  # a random port is never a reserved one
    mine = start_agent(
        server, credential(server)["token"], [{"name": "db", "kind": "tcp", "remote_addr": addr}]
    )
    assert mine.url("db") == f"tcp://{addr}"


def test_require_reservation(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server("--require-reservation")
    reserve(server, "/reserved_domains", {"domain": "kept"})  # kept.burrow.localhost
    token = credential(server)["token"]
    tcp_port = server.edge[server.edge.index("--tcp-ports") + 1].split("-")[0]
    agent = start_agent(
        server,
        token,
        [
            {"name": "unreserved", "kind": "http", "domain": "loose.burrow.localhost"},
            {"name": "reserved", "kind": "http", "domain": "kept.burrow.localhost"},
            {"name": "random", "kind": "http"},
            {"name": "custom", "kind": "http", "domain": "custom.example"},
            {
                "name": "tcp",
                "kind": "tcp",
                "remote_addr": f"127.0.0.1:{tcp_port}",
            },
        ],
    )
    assert "ERR_NGROK_7118" in agent.error("unreserved")
    assert agent.url("reserved").startswith("http://kept.burrow.localhost:")
    assert agent.url("random").endswith(".burrow.localhost:" + server.http_addr.rsplit(":", 1)[1])
    assert agent.url("custom").startswith("http://custom.example:")  # outside --domain: DNS decides
    assert "ERR_NGROK_7118" in agent.error("tcp")


def test_a_name_another_account_has_bound_cannot_be_reserved(
    two_accounts: tuple[BurrowServer, str], start_agent: Callable[..., Agent]
) -> None:
    server, other_key = two_accounts
    theirs = start_agent(
        server,
        credential(server, other_key)["token"],
        [{"name": "web", "kind": "http", "domain": "busy.example"}, {"name": "db", "kind": "tcp"}],
    )
    busy_addr = theirs.url("db").removeprefix("tcp://")
    with server.client() as http:
        domain = http.post("/reserved_domains", json={"domain": "busy.example"})
        assert domain.status_code == 400 and domain.json()["error_code"] == "ERR_NGROK_430"
        addr = http.post("/reserved_addrs", json={"addr": busy_addr})
        assert addr.status_code == 400 and addr.json()["error_code"] == "ERR_NGROK_90430"
        # The only TCP port is in use by the other account: none is left to assign.
        assert http.post("/reserved_addrs", json={}).json()["error_code"] == "ERR_NGROK_90415"
    theirs.stop()
    # Once their session is gone (the edge notices the closed connection), the name is free.
    deadline = time.monotonic() + 10
    with server.client() as http:
        while (
            reserved := http.post("/reserved_domains", json={"domain": "busy.example"})
        ).status_code != 201:
            assert reserved.json()["error_code"] == "ERR_NGROK_430" and time.monotonic() < deadline
            time.sleep(0.05)
