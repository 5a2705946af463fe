"""A database outage is the server's trouble: it never counts as failed authentication."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.harness import BurrowServer
from tests.postgres import PostgresServer

pytestmark = pytest.mark.e2e  # burrow serve on the session's PostgreSQL, which the test stops


def test_requests_during_an_outage_do_not_lock_out_the_address(
    postgres: PostgresServer, postgres_url: str, make_server: Callable[..., BurrowServer]
) -> None:
    server = make_server("--auth-failure-limit", "5/minute", env={"BURROW_DATABASE_URL": postgres_url})
    unused = server.create_user("fresh@example.com")  # never seen: must be checked in the database
    headers = {"Authorization": f"Bearer {unused}", "Ngrok-Version": "2"}
    base = server.base_url
    postgres.stop()
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            during = [http.get("/credentials") for _ in range(12)]
    finally:
        postgres.start()
    assert {r.status_code for r in during} == {503}, [r.text for r in during if r.status_code != 503]
    assert {r.json()["error_code"] for r in during} == {"ERR_NGROK_90504"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        deadline = time.monotonic() + 10
        response = http.get("/credentials")
        while response.status_code == 503 and time.monotonic() < deadline:  # reconnecting
            time.sleep(0.2)
            response = http.get("/credentials")
        assert response.status_code == 200, response.text
