"""Revocation never fails silently: agents on a Burrow whose PostgreSQL goes away and returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.edge.conftest import Agent
from tests.harness import BurrowServer
from tests.postgres import PostgresServer


def credential(server: BurrowServer, acl: list[str]) -> dict[str, Any]:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "agent", "acl": acl})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def public_get(server: BurrowServer, host: str) -> httpx.Response:
    return httpx.get(f"http://{server.http_addr}/", headers={"Host": host}, timeout=30)


def wait_for_log(server: BurrowServer, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.05)


def test_after_a_postgres_restart_deleting_the_credential_still_ends_the_session(
    postgres: PostgresServer,
    postgres_url: str,
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],
) -> None:
    server = make_server(env={"BURROW_DATABASE_URL": postgres_url})
    made = credential(server, [])
    start_agent(server, made["token"], [{"name": "web", "kind": "http", "domain": "kept.burrow.localhost"}])
    assert public_get(server, "kept.burrow.localhost").status_code == 200
    postgres.stop()
    try:
        wait_for_log(server, "revocation check failed", 5)
        # The live tunnel keeps serving through the outage.
        assert public_get(server, "kept.burrow.localhost").status_code == 200
    finally:
        postgres.start()
    wait_for_log(server, "revocation checks resumed", 5)
    with server.client() as http:
        deleted_at = time.monotonic()
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
        while public_get(server, "kept.burrow.localhost").status_code != 404:
            assert time.monotonic() - deleted_at < 1.0, "the session outlived its credential"
            time.sleep(0.05)
        assert http.get("/tunnel_sessions").json()["tunnel_sessions"] == []


def test_the_edge_fails_closed_while_revocations_cannot_be_checked_and_resumes(
    postgres: PostgresServer,
    postgres_url: str,
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],
) -> None:
    server = make_server("--revocation-fail-closed-after", "1", env={"BURROW_DATABASE_URL": postgres_url})
    token = credential(server, [])["token"]
    postgres.stop()
    try:
        wait_for_log(server, "failing closed", 5)
        refused = start_agent(server, token, [])
        assert "ERR_NGROK_90506" in refused.ready["error"], refused.ready
    finally:
        postgres.start()
    wait_for_log(server, "no longer failing closed", 5)
    agent = start_agent(server, token, [{"name": "web", "kind": "http", "domain": "back.burrow.localhost"}])
    assert agent.url("web").startswith("http://back.burrow.localhost")
    assert public_get(server, "back.burrow.localhost").status_code == 200


def test_a_session_started_while_the_database_is_down_gets_a_clear_error(
    postgres: PostgresServer,
    postgres_url: str,
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],
) -> None:
    server = make_server(env={"BURROW_DATABASE_URL": postgres_url})
    token = credential(server, [])["token"]
    postgres.stop()
    try:
        refused = start_agent(server, token, [])
        assert "ERR_NGROK_90504" in refused.ready["error"], refused.ready
    finally:
        postgres.start()
    assert "agent session failed" not in server.log()
