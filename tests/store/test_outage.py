"""The store survives its database: 503s while PostgreSQL is down, service again once it is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tests.harness import AppServer, BurrowServer
from tests.postgres import PostgresServer


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error_code"] == "ERR_NGROK_90504" and body["status_code"] == 503
    assert "database is unavailable" in body["msg"] and body["details"]["operation_id"]
    assert response.headers["ngrok-operation-id"] == body["details"]["operation_id"]


def test_readyz_and_healthz_report_a_reachable_database(app_server: AppServer) -> None:
    with app_server.bare_client() as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok", "database": "ok"}
        assert http.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_api_answers_503_while_postgres_is_down_and_serves_within_a_second_of_its_return(
    postgres: PostgresServer, postgres_url: str, make_server: Callable[..., BurrowServer]
) -> None:
    server = make_server("--no-edge", env={"BURROW_DATABASE_URL": postgres_url})
    with server.client() as http:
        made = http.post("/credentials", json={"description": "before the outage"})
        assert made.status_code == 201, made.text
        key_id = http.get("/api_keys").json()["keys"][0]["id"]
        assert http.get("/readyz").status_code == 200
        postgres.stop()
        try:
            # Reads on the fast path (authentication, a get) and through the pool (a list, a write).
            assert_unavailable(http.get(f"/api_keys/{key_id}"))
            assert_unavailable(http.get("/credentials"))
            assert_unavailable(http.post("/credentials", json={"description": "during"}))
            assert_unavailable(http.get("/readyz"))
            alive = http.get("/healthz")
            assert alive.status_code == 200 and alive.json() == {"status": "ok", "database": "unavailable"}
        finally:
            postgres.start()
        back = time.monotonic()
        while (listed := http.get("/credentials")).status_code != 200:
            assert_unavailable(listed)
            assert time.monotonic() - back < 1.0, "still unavailable a second after the database returned"
            time.sleep(0.02)
        assert [c["description"] for c in listed.json()["credentials"]] == ["before the outage"]
        assert http.get(f"/api_keys/{key_id}").status_code == 200
        assert http.post("/credentials", json={"description": "after"}).status_code == 201
        assert http.get("/readyz").json() == {"status": "ok", "database": "ok"}
    log = server.log()
    assert "database unavailable" in log
    assert "unhandled error" not in log and "Traceback" not in log
