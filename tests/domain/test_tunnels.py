"""The binding registry: one holder per name, takeover on reconnect, routing, cleanup."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from burrow.domain.tunnels import AgentSession, BindConflict, Registry, Tunnel

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def session(registry: Registry, session_id: str, account: str = "acct_1") -> AgentSession:
    made = AgentSession(session_id, account, "cr_1", "usr_1", "3", "linux", "test/1", "127.0.0.1:1", "", NOW)
    registry.add_session(made)
    return made


def tunnel(session_id: str, tunnel_id: str, proto: str = "https", **where: object) -> Tunnel:
    return Tunnel(tunnel_id, session_id, proto, f"{proto}://x", "localhost:80", "", NOW, **where)  # type: ignore[arg-type]


def test_a_hostname_has_one_holder() -> None:
    registry = Registry()
    session(registry, "ts_a")
    session(registry, "ts_b")
    registry.add_tunnel(tunnel("ts_a", "tn_1", hostname="App.example.com"))
    assert registry.https_tunnel("app.example.com.") is registry.sessions["ts_a"].tunnels["tn_1"]
    with pytest.raises(BindConflict):
        registry.add_tunnel(tunnel("ts_b", "tn_2", hostname="app.example.com"))
    assert not registry.is_free("https", "APP.example.com")
    assert registry.is_free("https", "app.example.com", reconnecting_from="ts_a")
    assert registry.is_free("tls", "app.example.com")  # TLS names are a separate space


def test_reconnecting_agent_takes_its_names_back() -> None:
    registry = Registry()
    session(registry, "ts_old")
    registry.add_tunnel(tunnel("ts_old", "tn_1", proto="tcp", port=20001))
    session(registry, "ts_new")
    registry.add_tunnel(tunnel("ts_new", "tn_1b", proto="tcp", port=20001), reconnecting_from="ts_old")
    assert registry.tcp_tunnel(20001).session_id == "ts_new"  # type: ignore[union-attr]
    assert registry.sessions["ts_old"].tunnels == {}
    # The old session ending later does not release what the new one holds.
    registry.remove_session("ts_old")
    assert registry.tcp_tunnel(20001).session_id == "ts_new"  # type: ignore[union-attr]


def test_removing_a_session_releases_everything() -> None:
    registry = Registry()
    session(registry, "ts_a")
    registry.add_tunnel(tunnel("ts_a", "tn_1", hostname="a.example.com"))
    registry.add_tunnel(tunnel("ts_a", "tn_2", proto="tcp", port=20002))
    registry.add_tunnel(tunnel("ts_a", "tn_3", proto="tls", hostname="t.example.com"))
    registry.add_tunnel(tunnel("ts_a", "tn_4", proto="labeled", labels={"edge": "web"}))
    assert len(list(registry.tunnels())) == 4
    registry.remove_session("ts_a")
    assert registry.http_tunnel("a.example.com") is None
    assert registry.tcp_tunnel(20002) is None and registry.tls_tunnel("t.example.com") is None
    assert registry.labeled_tunnel({"edge": "web"}) is None
    assert list(registry.tunnels()) == [] and registry.sessions == {}


def test_labeled_tunnels_take_turns() -> None:
    registry = Registry()
    session(registry, "ts_a")
    session(registry, "ts_b", account="acct_2")
    registry.add_tunnel(tunnel("ts_a", "tn_1", proto="labeled", labels={"edge": "web", "v": "1"}))
    registry.add_tunnel(tunnel("ts_a", "tn_2", proto="labeled", labels={"edge": "web", "v": "2"}))
    registry.add_tunnel(tunnel("ts_b", "tn_3", proto="labeled", labels={"edge": "web"}))
    picked = {registry.labeled_tunnel({"edge": "web"}, "acct_1").id for _ in range(10)}  # type: ignore[union-attr]
    assert picked == {"tn_1", "tn_2"}
    assert registry.labeled_tunnel({"edge": "web", "v": "2"}).id == "tn_2"  # type: ignore[union-attr]
    assert registry.labeled_tunnel({"edge": "api"}) is None
    assert len({registry.labeled_tunnel({"edge": "web"}).id for _ in range(9)}) == 3  # type: ignore[union-attr]


def test_unbind_is_idempotent() -> None:
    registry = Registry()
    session(registry, "ts_a")
    registry.add_tunnel(tunnel("ts_a", "tn_1", hostname="a.example.com"))
    assert registry.remove_tunnel("ts_a", "tn_1") is not None
    assert registry.remove_tunnel("ts_a", "tn_1") is None
    assert registry.remove_tunnel("ts_gone", "tn_1") is None


def test_http_and_https_are_separate_endpoints_of_one_holder() -> None:
    registry = Registry()
    session(registry, "ts_a")
    session(registry, "ts_b")
    registry.add_tunnel(tunnel("ts_a", "tn_1", proto="https", hostname="both.example.com"))
    registry.add_tunnel(tunnel("ts_a", "tn_2", proto="http", hostname="both.example.com"))
    assert registry.https_tunnel("both.example.com").id == "tn_1"  # type: ignore[union-attr]
    assert registry.http_tunnel("both.example.com").id == "tn_2"  # type: ignore[union-attr]
    # Another session may not take the other scheme of a name someone holds.
    registry.add_tunnel(tunnel("ts_a", "tn_3", proto="https", hostname="one.example.com"))
    with pytest.raises(BindConflict):
        registry.add_tunnel(tunnel("ts_b", "tn_4", proto="http", hostname="one.example.com"))
    assert not registry.is_free("http", "one.example.com")


def test_a_name_being_claimed_is_held_until_the_bind_finishes_or_is_abandoned() -> None:
    from datetime import UTC, datetime

    from burrow.domain.tunnels import AgentSession, BindConflict, Registry, Tunnel

    registry = Registry()
    for session_id in ("ts_a", "ts_b"):
        registry.add_session(
            AgentSession(session_id, "ac", "cr", "us", "", "", "", "", "", datetime.now(UTC))
        )

    def tunnel(session_id: str, tunnel_id: str) -> Tunnel:
        return Tunnel(tunnel_id, session_id, "https", "", "", "", datetime.now(UTC), hostname="x.example")

    pending = registry.begin_bind(tunnel("ts_a", "tn_1"))
    assert not registry.is_free("https", "x.example") and registry.https_tunnel("x.example") is None
    try:
        registry.begin_bind(tunnel("ts_b", "tn_2"))
        raise AssertionError("a second bind of a name being claimed went through")
    except BindConflict:
        pass
    registry.abandon_bind(pending)
    assert registry.is_free("https", "x.example")
    second = registry.begin_bind(tunnel("ts_b", "tn_2"))
    assert registry.finish_bind(second) and registry.https_tunnel("x.example").session_id == "ts_b"  # type: ignore[union-attr]
    registry.remove_session("ts_a")
    late = registry.begin_bind(tunnel("ts_b", "tn_3"))
    registry.remove_session("ts_b")
    assert not registry.finish_bind(late) and registry.https_tunnel("x.example") is None
