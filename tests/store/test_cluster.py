"""The cluster registry in the database: two nodes' registries on one SQLite file, each
writing through to the shared tables, as nodes on one PostgreSQL do."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from burrow.domain.tunnels import AgentSession, BindConflict, Registry, Tunnel
from burrow.store import database
from burrow.store.cluster import STOP_SESSION, ClusterRegistry

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = database.open_engine(database.sqlite_url(tmp_path))
    database.migrate(made)
    yield made
    made.dispose()


def node(engine: Engine, name: str, lease: float = 9.0) -> tuple[ClusterRegistry, Registry]:
    cluster = ClusterRegistry(engine, f"node_{name}", name, lease)
    cluster.register()
    return cluster, Registry(cluster)


def session(registry: Registry, session_id: str, credential: str = "cr_1", account: str = "acct_1") -> None:
    registry.add_session(
        AgentSession(session_id, account, credential, "usr_1", "3", "linux", "t/1", "127.0.0.1:1", "", NOW)
    )


def https(session_id: str, tunnel_id: str, hostname: str, proto: str = "https") -> Tunnel:
    return Tunnel(
        tunnel_id,
        session_id,
        proto,
        f"{proto}://{hostname}:8444",
        "localhost:80",
        "",
        NOW,
        hostname=hostname,  # type: ignore[arg-type]
    )


def test_a_hostname_is_bound_once_across_nodes(engine: Engine) -> None:
    _, a = node(engine, "a")
    _, b = node(engine, "b")
    session(a, "ts_a")
    session(b, "ts_b")
    a.add_tunnel(https("ts_a", "tn_1", "app.example.com"))
    with pytest.raises(BindConflict):
        b.add_tunnel(https("ts_b", "tn_2", "APP.example.com"))
    with pytest.raises(BindConflict):  # the other scheme too: one session holds a hostname
        b.add_tunnel(https("ts_b", "tn_2", "app.example.com", proto="http"))
    assert b.https_tunnel("app.example.com") is None  # the refused bind left nothing locally
    a.add_tunnel(https("ts_a", "tn_3", "app.example.com", proto="http"))  # same session: both schemes
    a.remove_tunnel("ts_a", "tn_1")
    with pytest.raises(BindConflict):  # still held through the http tunnel
        b.add_tunnel(https("ts_b", "tn_2", "app.example.com"))
    a.remove_tunnel("ts_a", "tn_3")
    b.add_tunnel(https("ts_b", "tn_2", "app.example.com"))
    assert b.https_tunnel("app.example.com") is not None


def test_every_node_lists_the_cluster(engine: Engine) -> None:
    cluster_a, _ = node(engine, "a")
    _, b = node(engine, "b")
    session(b, "ts_b")
    b.add_tunnel(https("ts_b", "tn_1", "b.example.com"))
    session(b, "ts_other", account="acct_2")
    assert [s.id for s in cluster_a.sessions("acct_1")] == ["ts_b"]
    found = cluster_a.session("ts_b")
    assert found is not None and found[1] == "node_b"
    [listed] = cluster_a.tunnels("acct_1")
    assert (listed.id, listed.url, listed.hostname, listed.session_id) == (
        "tn_1",
        "https://b.example.com:8444",
        "b.example.com",
        "ts_b",
    )
    b.remove_session("ts_b")
    assert cluster_a.sessions("acct_1") == [] and cluster_a.tunnels("acct_1") == []


def test_a_dead_nodes_names_come_free_when_its_lease_runs_out(engine: Engine) -> None:
    cluster_a, a = node(engine, "a")
    cluster_b, b = node(engine, "b", lease=0.2)
    session(b, "ts_b")
    b.add_tunnel(Tunnel("tn_1", "ts_b", "tcp", "tcp://127.0.0.1:20001", "", "", NOW, port=20001))
    session(a, "ts_a")
    with pytest.raises(BindConflict):
        a.add_tunnel(Tunnel("tn_2", "ts_a", "tcp", "tcp://127.0.0.1:20001", "", "", NOW, port=20001))
    time.sleep(0.3)  # b stops renewing: it "died"
    assert cluster_a.renew()  # a is alive, and removes b's rows
    assert [n.name for n in cluster_a.nodes()] == ["a"]
    a.add_tunnel(Tunnel("tn_2", "ts_a", "tcp", "tcp://127.0.0.1:20001", "", "", NOW, port=20001))
    assert not cluster_b.renew()  # b comes back: it learns its lease is gone


def test_a_reconnecting_agent_takes_its_names_from_another_node(engine: Engine) -> None:
    _, a = node(engine, "a")
    _, b = node(engine, "b")
    session(b, "ts_old", credential="cr_1")
    b.add_tunnel(https("ts_old", "tn_1", "app.example.com"))
    session(a, "ts_thief", credential="cr_2")
    with pytest.raises(BindConflict):  # another credential cannot claim to be reconnecting
        a.add_tunnel(https("ts_thief", "tn_1", "app.example.com"), reconnecting_from="ts_old")
    session(a, "ts_new", credential="cr_1")
    a.add_tunnel(https("ts_new", "tn_1", "app.example.com"), reconnecting_from="ts_old")
    b.remove_session("ts_old")  # the old node notices later: the name stays with the new session
    session(b, "ts_other", credential="cr_3")
    with pytest.raises(BindConflict):
        b.add_tunnel(https("ts_other", "tn_9", "app.example.com"))


def test_commands_reach_the_node_named(engine: Engine) -> None:
    cluster_a, _ = node(engine, "a")
    cluster_b, _ = node(engine, "b")
    cluster_a.send_stop("node_b", "ts_1", "stopped through the API")
    assert cluster_a.take_commands() == []
    [command] = cluster_b.take_commands()
    assert (command.action, command.session_id, command.message) == (
        STOP_SESSION,
        "ts_1",
        "stopped through the API",
    )
    assert cluster_b.take_commands() == []
