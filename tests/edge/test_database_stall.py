"""A stalled database delays binds, never traffic: nothing the edge asks of it runs on the loop.

Each test holds the database still for three seconds (SQLite: another process holds the
write lock; PostgreSQL: a transaction holds the cluster tables locked) while a second agent
starts a session and binds. Meanwhile, requests to a tunnel already bound keep their
latency and /healthz answers; the second agent's bind waits for the lock, then succeeds.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest

from tests.edge.conftest import Agent
from tests.edge.test_database_outage import credential
from tests.harness import BurrowServer

STALL = 3.0


@contextlib.contextmanager
def sqlite_write_lock(database: str) -> Iterator[None]:
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@contextlib.contextmanager
def postgres_table_locks(url: str) -> Iterator[None]:
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute(
            "LOCK TABLE cluster_sessions, cluster_tunnels, cluster_bindings IN ACCESS EXCLUSIVE MODE"
        )
        yield
        connection.rollback()


def stalled_while_an_agent_binds(
    server: BurrowServer,
    start_agent: Callable[..., Agent],
    stall: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "steady.burrow.localhost"}])
    latencies: list[float] = []
    late: dict[str, Agent] = {}

    def bind_late() -> None:
        endpoints = [{"name": "web", "kind": "http", "domain": "late.burrow.localhost"}]
        late["agent"] = start_agent(server, token, endpoints)

    with httpx.Client(
        base_url=f"http://{server.http_addr}", headers={"Host": "steady.burrow.localhost"}
    ) as tunnel:
        assert tunnel.get("/").status_code == 200  # the connection is up before the stall
        with stall():
            stalled_at = time.monotonic()
            binder = threading.Thread(target=bind_late)
            binder.start()
            health = httpx.get(f"{server.base_url}/healthz", timeout=2)
            assert health.status_code == 200, health.text
            while time.monotonic() - stalled_at < STALL:
                started = time.perf_counter()
                assert tunnel.get("/").status_code == 200
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)
            assert binder.is_alive(), "the bind did not wait for the database"
        binder.join(30)
    assert not binder.is_alive()
    late_url = late["agent"].url("web")
    assert late_url.startswith("http://late.burrow.localhost"), late["agent"].ready
    assert (
        httpx.get(f"http://{server.http_addr}/", headers={"Host": "late.burrow.localhost"}).status_code == 200
    )
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    assert len(latencies) > 50, latencies
    assert p99 < 0.050, f"p99 {p99 * 1000:.1f} ms while the database was stalled (max {latencies[-1]:.3f} s)"


def test_a_locked_sqlite_file_delays_binds_not_traffic(
    make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server()
    stalled_while_an_agent_binds(server, start_agent, lambda: sqlite_write_lock(str(server.database)))


@pytest.mark.postgres
def test_locked_postgres_cluster_tables_delay_binds_not_traffic(
    postgres_url: str, make_server: Callable[..., BurrowServer], start_agent: Callable[..., Agent]
) -> None:
    server = make_server(env={"BURROW_DATABASE_URL": postgres_url})
    stalled_while_an_agent_binds(server, start_agent, lambda: postgres_table_locks(postgres_url))
