"""PostgreSQL LISTEN/NOTIFY (store/notify.py): two stores on one database, as two nodes are.

What one writes clears the other's read cache at once; a rolled-back write notifies
nothing; while the listener is lost nothing is served from the cache, and after the
database's restart the notifications come again; a name bound on one node clears the
other's cached relay routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from burrow.domain import ids, tokens
from burrow.domain.tunnels import Registry
from burrow.edge.relay import ROUTE_TTL, RelayRoutes
from burrow.store.cluster import ClusterRegistry
from burrow.store.notify import CHANGED, RESYNC, ROUTES, notify
from burrow.store.store import API_KEYS, CREDENTIALS, Store
from tests.postgres import PostgresServer
from tests.store.test_cluster import https, session


@pytest.fixture
def two_nodes(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Store, Store]]:
    first = Store.open(tmp_path, postgres_url)
    second = Store.open(tmp_path, postgres_url)  # the same secret: the same data directory
    for store in (first, second):
        store.listen()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def within(seconds: float, condition: Callable[[], bool], what: str) -> float:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, what
        time.sleep(0.01)
    return time.monotonic() - began


def listening(store: Store) -> bool:
    return store.feed is not None and store.feed.listening


def caught_up(writer: Store, reader: Store) -> None:
    """Wait until ``reader`` has received the notifications of ``writer``'s writes so far
    (PostgreSQL delivers them in commit order), so that they clear no later read's result."""
    assert reader.feed is not None
    received: list[str] = []
    reader.feed.subscribe(received.append)
    marker = f"marker {time.monotonic()}"
    with writer.engine.begin() as connection:
        notify(connection, marker)
    try:
        within(2.0, lambda: marker in received, "the notifications did not arrive")
    finally:
        reader.feed.unsubscribe(received.append)


def test_a_write_on_one_node_clears_the_others_cache_at_once(two_nodes: tuple[Store, Store]) -> None:
    a, b = two_nodes
    within(5, lambda: listening(a) and listening(b), "the listeners did not connect")
    user, token = a.create_account("a@example.com")
    key_id = tokens.resource_id(token, ids.API_KEY)
    assert isinstance(key_id, str)
    made, _ = a.create_credential(user.account_id, user.id, "first", "", [])
    caught_up(a, b)
    # B authenticates and reads: both are cached, as on SQLite.
    assert b.authenticate_api_key(key_id, token) is not None
    assert b.cached_principal(token) is not None
    first = b.get(CREDENTIALS, user.account_id, made.id)
    assert first is not None and b.get(CREDENTIALS, user.account_id, made.id) is first
    # A's writes reach B's cache through the notification, not through B's own commits.
    a.update(CREDENTIALS, user.account_id, made.id, {"description": "second"})
    within(
        1.0,
        lambda: b.get(CREDENTIALS, user.account_id, made.id).description == "second",  # type: ignore[union-attr]
        "B kept its cached credential",
    )
    caught_up(a, b)
    assert b.authenticate_api_key(key_id, token) is not None
    assert b.cached_principal(token) is not None  # cached again
    assert a.delete(API_KEYS, user.account_id, key_id)
    within(1.0, lambda: b.cached_principal(token) is None, "B kept the deleted key's principal")
    assert b.authenticate_api_key(key_id, token) is None


def test_a_rolled_back_write_notifies_nothing(two_nodes: tuple[Store, Store]) -> None:
    a, b = two_nodes
    within(5, lambda: listening(b), "the listener did not connect")
    assert b.feed is not None
    received: list[str] = []
    b.feed.subscribe(received.append)
    with pytest.raises(RuntimeError), a._writing() as connection:
        notify(connection, "rolled back")
        raise RuntimeError("the write fails after its notification was queued")
    with a.engine.begin() as connection:
        notify(connection, "committed")
    within(2.0, lambda: "committed" in received, "the committed notification did not arrive")
    assert "rolled back" not in received
    # The store's own writes notify when they commit.
    a.create_account("b@example.com")
    within(2.0, lambda: CHANGED in received, "a committed write did not notify")


def test_without_its_listener_a_node_caches_nothing_and_after_a_restart_it_listens_again(
    two_nodes: tuple[Store, Store], postgres: PostgresServer
) -> None:
    a, b = two_nodes
    within(5, lambda: listening(a) and listening(b), "the listeners did not connect")
    user, token = a.create_account("a@example.com")
    key_id = tokens.resource_id(token, ids.API_KEY)
    assert isinstance(key_id, str)
    caught_up(a, b)
    assert b.authenticate_api_key(key_id, token) is not None
    assert b.cached_principal(token) is not None
    postgres.stop()
    try:
        # Fail safe: a listener that is gone could miss a deletion, so the cache is off.
        within(5, lambda: not listening(b), "B still trusts a lost listener")
        assert b.cached_principal(token) is None
    finally:
        postgres.start()
    within(10, lambda: listening(a) and listening(b), "the listeners did not reconnect")
    assert b.authenticate_api_key(key_id, token) is not None
    assert b.cached_principal(token) is not None
    assert a.delete(API_KEYS, user.account_id, key_id)
    within(1.0, lambda: b.cached_principal(token) is None, "B kept the deleted key after the restart")


def test_a_name_bound_on_another_node_is_relayed_before_a_cached_miss_expires(
    two_nodes: tuple[Store, Store],
) -> None:
    a, b = two_nodes
    within(5, lambda: listening(a), "the listener did not connect")
    assert a.feed is not None
    here = ClusterRegistry(a.engine, "node_a", "a", 9.0, "127.0.0.1:1")
    there = ClusterRegistry(b.engine, "node_b", "b", 9.0, "127.0.0.2:2")
    for cluster in (here, there):
        cluster.register()
    routes = RelayRoutes(here)
    a.feed.subscribe(lambda payload: routes.forget() if payload in (ROUTES, RESYNC) else None)
    registry = Registry(there)
    session(registry, "ts_b")
    assert asyncio.run(routes.lookup("host", "moved.example.com")) is None  # a miss, cached
    missed_at = time.monotonic()
    registry.add_tunnel(https("ts_b", "tn_1", "moved.example.com"))
    # The notification of the bind clears the cached miss: found well before it would expire.
    within(
        ROUTE_TTL * 0.8,
        lambda: asyncio.run(routes.lookup("host", "moved.example.com")) == "127.0.0.2:2",
        "no route",
    )
    assert time.monotonic() - missed_at < ROUTE_TTL
