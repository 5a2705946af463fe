"""The cluster's writes off the loop: in order, awaited with a limit, undone if abandoned."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from burrow.domain import errors
from burrow.domain.tunnels import Registry
from burrow.edge.cluster_writes import ClusterWrites
from burrow.store import schema
from burrow.store.cluster import ClusterRegistry
from tests.store.test_cluster import engine, https, session  # noqa: F401 - engine is a fixture


@pytest.fixture
def writes(engine: Engine) -> Iterator[ClusterWrites]:  # noqa: F811
    cluster = ClusterRegistry(engine, "node_a", "a", 9.0)
    cluster.register()
    made = ClusterWrites(cluster, wait=0.3)
    yield made
    made.close()


def bound(engine: Engine) -> list[str]:  # noqa: F811
    with engine.connect() as connection:
        return list(connection.execute(select(schema.cluster_bindings.c.name)).scalars())


def test_a_claim_the_database_holds_up_is_refused_and_undone(
    engine: Engine,  # noqa: F811
    writes: ClusterWrites,
) -> None:
    registry = Registry(writes)
    session(registry, "ts_a")
    tunnel = https("ts_a", "tn_1", "held.example.com")
    database = engine.url.database
    assert database is not None
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(errors.BurrowError) as refused:
            asyncio.run(writes.claim_name(tunnel, "acct_1", None, None, keep_binding=False))
        assert refused.value.code == errors.REGISTRY_UNAVAILABLE.code
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # The claim ran once the lock went; its undo, queued behind it, removed it again.
    asyncio.run(writes.run(lambda: None))
    assert bound(engine) == []
    # The name is free for the next claim, which the database now answers at once.
    asyncio.run(writes.claim_name(tunnel, "acct_1", None, None, keep_binding=False))
    assert bound(engine) == ["held.example.com"]


def test_removals_are_queued_and_land_before_later_claims(engine: Engine, writes: ClusterWrites) -> None:  # noqa: F811
    registry = Registry(writes)
    session(registry, "ts_a")
    session(registry, "ts_b", credential="cr_2")
    first = https("ts_a", "tn_1", "moving.example.com")
    registry.add_tunnel(first)
    # The release is queued, not waited for; the claim behind it finds the name free.
    registry.remove_tunnel("ts_a", "tn_1")
    asyncio.run(writes.claim_name(https("ts_b", "tn_2", "moving.example.com"), "acct_1", None, None, False))
    assert bound(engine) == ["moving.example.com"]
