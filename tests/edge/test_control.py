"""The edge's decisions: authentication, version negotiation, bind authorization."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from burrow.domain import ids, tokens
from burrow.domain.errors import BurrowError
from burrow.edge import wire
from burrow.edge.cluster_writes import ClusterWrites
from burrow.edge.control import AgentControl, Authenticated, EdgeSettings
from burrow.store import schema
from burrow.store.cluster import ClusterRegistry
from burrow.store.ratelimit import Throttle
from burrow.store.store import BOT_USERS, CREDENTIALS, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path)
    yield store
    store.close()


def make_control(store: Store, settings: EdgeSettings, throttle: Throttle | None = None) -> AgentControl:
    """The control as the edge builds it: its registry's claims go to the real cluster tables."""
    cluster = ClusterRegistry(store.engine, "node_" + ids.new_id_body(), "test", 60.0, None)
    cluster.register()
    return AgentControl(store, ClusterWrites(cluster), settings, throttle)


@pytest.fixture
def edge(store: Store) -> AgentControl:
    return make_control(store, EdgeSettings(tcp_ports=range(20000, 20003)))


def credential(store: Store, acl: list[str], owner: str | None = None) -> tuple[str, str, str]:
    """A new credential's id and token, and its account."""
    user, _ = store.create_account(f"{ids.new_id_body()}@example.com")
    item, token = store.create_credential(user.account_id, owner or user.id, "", "", acl)
    return item.id, token, user.account_id


def auth(
    edge: AgentControl, token: str, versions: list[str] | None = None, client_id: str = ""
) -> Authenticated:
    return authenticate(
        edge,
        {
            "Version": versions or ["3", "2"],
            "ClientId": client_id,
            "Extra": {"AuthToken": token, "OS": "linux"},
        },
        "127.0.0.1:5555",
    )


def code(error: pytest.ExceptionInfo[BurrowError]) -> str:
    return error.value.code


def shown(error: pytest.ExceptionInfo[BurrowError]) -> str:
    """The refusal as the agent reads it in the answer's Error field."""
    return wire.Refusal.of(error.value).wire()


def authenticate(edge: AgentControl, message: dict[str, Any], client_addr: str) -> Authenticated:
    """Auth as the agent's JSON object: parsed as the edge parses it, then decided."""
    return asyncio.run(edge.authenticate(wire.Auth.parse(message), client_addr))


def start_labeled(edge: AgentControl, session: Authenticated, message: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(edge.start_labeled(session, wire.StartTunnelWithLabel.parse(message))).to_json()


def unbind(edge: AgentControl, session: Authenticated, message: dict[str, Any]) -> dict[str, Any]:
    return edge.unbind(session, wire.Unbind.parse(message)).to_json()


def bind_message(edge: AgentControl, session: Authenticated, message: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(edge.bind(session, wire.Bind.parse(message))).to_json()


def bind(edge: AgentControl, session: Authenticated, proto: str, **opts: Any) -> dict[str, Any]:
    return bind_message(
        edge, session, {"Id": "", "Proto": proto, "ForwardsTo": "localhost:80", "Opts": opts, "Extra": {}}
    )


def test_auth_accepts_a_credential_and_negotiates_versions(edge: AgentControl, store: Store) -> None:
    credential_id, token, account = credential(store, [])
    session = auth(edge, token)
    assert session.version == "3" and session.session.credential_id == credential_id
    assert session.session.account_id == account and session.session.id.startswith("ts_")
    response = edge.auth_response(session).to_json()
    assert (
        response["ClientId"] == session.session.id and response["Error"] == "" and response["Version"] == "3"
    )
    assert auth(edge, token, ["2"]).version == "2"
    with pytest.raises(BurrowError) as error:
        auth(edge, token, ["4"])
    assert code(error) == "ERR_NGROK_811"
    # Go agents spell the key "Authtoken".
    assert authenticate(edge, {"Version": ["2"], "Extra": {"Authtoken": token}}, "x:1").version == "2"


@pytest.mark.parametrize("token", ["", "nonsense", "x" * 56, None])
def test_malformed_tokens(edge: AgentControl, token: str | None) -> None:
    with pytest.raises(BurrowError) as error:
        auth(edge, token)  # type: ignore[arg-type]
    assert code(error) == "ERR_NGROK_105"
    assert shown(error).endswith("\n\nERR_NGROK_105\n")


def test_invalid_tokens(edge: AgentControl, store: Store) -> None:
    _, _, account = credential(store, [])
    api_key = store.create_user(account, "m@example.com", "member")[1]
    for wrong in (tokens.issue(ids.CREDENTIAL).token, api_key):
        with pytest.raises(BurrowError) as error:
            auth(edge, wrong)
        assert code(error) in ("ERR_NGROK_107", "ERR_NGROK_105")
    with pytest.raises(BurrowError) as error:
        auth(edge, tokens.issue(ids.CREDENTIAL).token)
    assert code(error) == "ERR_NGROK_107"


def test_inactive_owner_is_refused(edge: AgentControl, store: Store) -> None:
    user, _ = store.create_account("o@example.com")
    bot = store.create_bot_user(user.account_id, "b", True)
    _, token = store.create_credential(user.account_id, bot.id, "", "", [])
    assert auth(edge, token)
    store.update(BOT_USERS, user.account_id, bot.id, {"active": False})
    with pytest.raises(BurrowError) as error:
        auth(edge, token)
    assert code(error) == "ERR_NGROK_107"


def test_http_binds_follow_the_acl(edge: AgentControl, store: Store) -> None:
    credential_id, token, _ = credential(store, ["bind:*.example.com", "bind:app.burrow.localhost"])
    session = auth(edge, token)
    response = bind(edge, session, "https", Hostname="a.example.com", Auth="")
    assert response["Error"] == "" and response["URL"] == "https://a.example.com:8444"
    assert response["Opts"] == {"Hostname": "a.example.com", "Auth": ""} and response["Id"].startswith("tn_")
    assert bind(edge, session, "http", Subdomain="app")["Opts"]["Hostname"] == "app.burrow.localhost"
    with pytest.raises(BurrowError) as error:
        bind(edge, session, "https", Hostname="evil.org")
    assert code(error) == "ERR_NGROK_316" and credential_id in shown(error)
    with pytest.raises(BurrowError) as error:
        bind(edge, session, "https")  # an assigned name passes the same check
    assert code(error) == "ERR_NGROK_316"
    with pytest.raises(BurrowError) as error:
        bind(edge, session, "https", Hostname="bad_name.example.com")
    assert code(error) == "ERR_NGROK_326"
    with pytest.raises(BurrowError) as error:
        bind(edge, session, "udp")
    assert code(error) == "ERR_NGROK_332"


def test_names_have_one_holder_until_the_agent_reconnects(edge: AgentControl, store: Store) -> None:
    _, token, _ = credential(store, [])
    first = auth(edge, token)
    assigned = bind(edge, first, "https")["Opts"]["Hostname"]
    assert assigned.endswith(".burrow.localhost")
    second = auth(edge, token)
    with pytest.raises(BurrowError) as error:
        bind(edge, second, "https", Hostname=assigned)
    assert code(error) == "ERR_NGROK_334"
    again = auth(edge, token, client_id=first.session.id)
    assert bind(edge, again, "https", Hostname=assigned)["Error"] == ""
    assert edge.registry.https_tunnel(assigned).session_id == again.session.id  # type: ignore[union-attr]


def test_tcp_binds(edge: AgentControl, store: Store) -> None:
    _, open_token, _ = credential(store, [])
    session = auth(edge, open_token)
    assigned = bind(edge, session, "tcp", Addr="")
    port = int(assigned["URL"].rsplit(":", 1)[1])
    assert 20000 <= port < 20003 and assigned["Opts"]["Addr"] == f"127.0.0.1:{port}"
    credential_id, token, _ = credential(store, ["bind:127.0.0.1:20001", "bind:127.0.0.1:20002"])
    limited = auth(edge, token)
    with pytest.raises(BurrowError) as error:
        bind(edge, limited, "tcp", Addr="")
    assert code(error) == "ERR_NGROK_356"
    free = [p for p in (20001, 20002) if p != port]
    assert bind(edge, limited, "tcp", Addr=f"127.0.0.1:{free[0]}")["URL"] == f"tcp://127.0.0.1:{free[0]}"
    with pytest.raises(BurrowError) as error:
        bind(edge, limited, "tcp", Addr="127.0.0.1:20000")
    assert code(error) in ("ERR_NGROK_308", "ERR_NGROK_334") and credential_id in shown(error)
    with pytest.raises(BurrowError) as error:
        bind(edge, limited, "tcp", Addr="127.0.0.1:9999")
    assert code(error) == "ERR_NGROK_307"


def test_labels(edge: AgentControl, store: Store) -> None:
    _, token, _ = credential(store, ["bind:edge=web"])
    session = auth(edge, token)
    response = start_labeled(edge, session, {"Labels": {"edge": "web"}, "ForwardsTo": "x"})
    assert response["Error"] == "" and response["Id"].startswith("tn_")
    with pytest.raises(BurrowError) as error:
        start_labeled(edge, session, {"Labels": {"edge": "api"}})
    assert code(error) == "ERR_NGROK_399"
    assert unbind(edge, session, {"Id": response["Id"]}) == {"Error": ""}
    assert unbind(edge, session, {"Id": response["Id"]}) == {"Error": ""}
    assert edge.registry.labeled_tunnel({"edge": "web"}) is None


def test_deleted_credential_cannot_bind(edge: AgentControl, store: Store) -> None:
    credential_id, token, account = credential(store, [])
    session = auth(edge, token)
    store.delete(CREDENTIALS, account, credential_id)
    with pytest.raises(BurrowError) as error:
        bind(edge, session, "https")
    assert code(error) == "ERR_NGROK_300"
    with pytest.raises(BurrowError) as error:
        auth(edge, token)
    assert code(error) == "ERR_NGROK_107"


_HTTP_DENY = "on_http_request: [{actions: [{type: deny}]}]"  # no HTTP phase on a TCP endpoint


def test_endpoint_options_are_enforced_or_refuse_the_bind(edge: AgentControl, store: Store) -> None:
    _, token, _ = credential(store, [])
    session = auth(edge, token)
    secret_opts = {
        "Hostname": "",
        "BasicAuth": {"credentials": [{"username": "alice", "cleartext_password": "correct horse"}]},
        "WebhookVerification": {"provider": "github", "secret": "s3cret"},
        "IPRestriction": {"allow_cidrs": ["10.0.0.0/8"], "deny_cidrs": None},
        "OAuth": None,
    }
    response = bind(edge, session, "https", **secret_opts)
    # The echo keeps every key (the SDK parses it back) but no secret.
    assert response["Opts"].keys() == secret_opts.keys()
    assert "correct horse" not in repr(response) and "s3cret" not in repr(response)
    tunnel = edge.registry.https_tunnel(response["Opts"]["Hostname"])
    assert tunnel is not None and tunnel.policy.basic_auth is not None and tunnel.policy.webhook is not None
    assert tunnel.policy.ip_restriction is not None
    assert not tunnel.policy.ip_restriction.allows(ipaddress.ip_address("127.0.0.1"))
    assert tunnel.policy.enforced is not None  # what the edge runs: the options as policy rules
    tcp = bind(edge, session, "tcp", Addr="", ProxyProto=2, IPRestriction={"deny_cidrs": ["127.0.0.0/8"]})
    tcp_tunnel = edge.registry.tcp_tunnel(int(tcp["URL"].rsplit(":", 1)[1]))
    assert tcp_tunnel is not None and tcp_tunnel.policy.proxy_proto == 2

    refusals = [
        ("https", {"OAuth": {"provider": "google"}}, "ERR_NGROK_90301", "OAuth"),
        ("tcp", {"Addr": "", "TrafficPolicy": _HTTP_DENY}, "ERR_NGROK_90301", "TrafficPolicy"),
        ("tls", {"MutualTLSAtEdge": {"mutual_tls_ca": "eA=="}}, "ERR_NGROK_90301", "MutualTLSAtEdge"),
        ("http", {"MutualTLSCA": {"mutual_tls_ca": "eA=="}}, "ERR_NGROK_90301", "MutualTLSCA"),
        ("https", {"IPRestriction": {"allow_cidrs": ["10.0.0.0/40"]}}, "ERR_NGROK_362", "10.0.0.0/40"),
        ("https", {"WebhookVerification": {"provider": "acme", "secret": "x"}}, "ERR_NGROK_364", "acme"),
        ("https", {"CircuitBreaker": {"error_threshold": 2}}, "ERR_NGROK_361", "2"),
        ("https", {"RequestHeaders": {"add": ["x-a:1\r\nx-b:2"]}}, "ERR_NGROK_1624", "x-a"),
    ]
    for proto, opts, expected, named in refusals:
        with pytest.raises(BurrowError) as error:
            bind(edge, session, proto, **opts)
        assert code(error) == expected and named in shown(error), (opts, shown(error))
    with pytest.raises(BurrowError) as error:
        bind(
            edge,
            session,
            "https",
            BasicAuth={"credentials": [{"username": "a", "cleartext_password": "short"}]},
        )
    assert code(error) == "ERR_NGROK_360" and "short" not in shown(error)
    # HostHeaderRewrite needs the ForwardsTo, which the v2 agent binary never sends.
    without_forwards_to = {"Id": "", "Proto": "http", "Opts": {"HostHeaderRewrite": True}, "Extra": {}}
    with pytest.raises(BurrowError) as error:
        bind_message(edge, session, without_forwards_to)
    assert code(error) == "ERR_NGROK_90301" and "HostHeaderRewrite" in shown(error)
    rewritten = bind(edge, session, "http", HostHeaderRewrite=True)
    rewritten_tunnel = edge.registry.http_tunnel(rewritten["Opts"]["Hostname"])
    assert rewritten_tunnel is not None and rewritten_tunnel.policy.host_header == b"localhost:80"


def test_binds_read_names_with_the_one_grammar(edge: AgentControl, store: Store) -> None:
    _, token, _ = credential(store, [])
    session = auth(edge, token)
    for addr in ("127.0.0.1:020001", "020001", "127.0.0.1:\uff12\uff10\uff1001", "127.0.0.1:+20001"):
        with pytest.raises(BurrowError) as error:
            bind(edge, session, "tcp", Addr=addr)
        assert code(error) == "ERR_NGROK_307", addr
    assert bind(edge, session, "tcp", Addr="127.0.0.1:20001")["URL"] == "tcp://127.0.0.1:20001"
    for hostname in ("\u212a.example.com", "a..example.com", "-a.example.com"):
        with pytest.raises(BurrowError) as error:
            bind(edge, session, "https", Hostname=hostname)
        assert code(error) == "ERR_NGROK_326", hostname
    assert (
        bind(edge, session, "https", Hostname="Mixed.Example.com.")["Opts"]["Hostname"] == "mixed.example.com"
    )


def test_no_tenant_binds_the_server_s_own_names(store: Store) -> None:
    """IP addresses, localhost, the API's own host: a tenant answering there would plant
    cookies the dashboard reads (cookies ignore ports)."""
    settings = EdgeSettings(server_hosts=frozenset({"api.example.com"}))
    edge = make_control(store, settings)
    _, token, _ = credential(store, [])
    session = auth(edge, token)
    servers = [
        "127.0.0.1",
        "0.0.0.0",
        "10.1.2.3",
        "127.1",  # a browser's URL parser reads these as IPv4 addresses too
        "2130706433",
        "0x7f000001",
        "a.0x7f.0x1",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "[fe80::1]",
        "localhost",
        "x.localhost",
        "burrow.localhost",  # --domain itself: the server's, its tenants' names are under it
        "api.example.com",
        "a.api.example.com",
    ]
    for hostname in servers:
        for proto, option in (("http", "Hostname"), ("https", "Hostname"), ("tls", "Hostname")):
            with pytest.raises(BurrowError) as error:
                bind(edge, session, proto, **{option: hostname})
            assert code(error) == "ERR_NGROK_326", (proto, hostname)
            assert "the server's, never an endpoint's" in str(error.value), (proto, hostname)
        with pytest.raises(BurrowError) as error:
            bind(edge, session, "http", Domain=hostname)
        assert code(error) == "ERR_NGROK_326", hostname
    # Today's agents name the endpoint by URL: the same names are refused there, IPv6 too.
    for url in ("http://127.0.0.1", "https://localhost", "https://burrow.localhost:8444", "http://[::1]"):
        with pytest.raises(BurrowError) as error:
            url_bind(edge, session, url.split(":")[0], url)
        assert code(error) == "ERR_NGROK_326" and "never an endpoint's" in str(error.value), url
    for url in ("http://[::1", "http://[::1]:", "http://[::1]x", "http://[nope]"):
        with pytest.raises(BurrowError) as error:
            url_bind(edge, session, "http", url)
        assert code(error) == "ERR_NGROK_301", url
    for hostname in ("ok.burrow.localhost", "api.example.org", "myapi.example.com", "1a.example.com"):
        assert bind(edge, session, "http", Hostname=hostname)["Opts"]["Hostname"] == hostname
    assert bind(edge, session, "http", Hostname="a.0x7g")["Opts"]["Hostname"] == "a.0x7g"  # not hex


def go_bind(proto: str, url: str, **extra: Any) -> dict[str, Any]:
    """A Bind as today's Go agent library (ngrok-go 2.1.1) sends it: the endpoint named by
    ``Opts.URL``, every legacy option present and empty (agent-protocol.md)."""
    opts = {
        "URL": url,
        "Domain": "",
        "Hostname": "",
        "Subdomain": "",
        "Auth": "",
        "HostHeaderRewrite": False,
        "LocalURLScheme": "",
        "ProxyProto": 0,
        "Compression": None,
        "CircuitBreaker": None,
        "IPRestriction": None,
        "BasicAuth": None,
        "OAuth": None,
        "OIDC": None,
        "WebhookVerification": None,
        "MutualTLSCA": None,
        "RequestHeaders": None,
        "ResponseHeaders": None,
        "WebsocketTCPConverter": None,
        "UserAgentFilter": None,
        "Policy": None,
        "TrafficPolicy": "",
    }
    return {
        "Id": "",
        "Proto": proto,
        "ForwardsTo": "app://vm/agent?pid=9254",
        "ForwardsProto": "",
        "Opts": opts,
        "Extra": {
            "Name": "",
            "Token": "",
            "IPPolicyRef": "",
            "Metadata": "",
            "Description": "",
            "Bindings": None,
            "PoolingEnabled": False,
            **extra,
        },
    }


def url_bind(
    edge: AgentControl, session: Authenticated, proto: str, url: str, **extra: Any
) -> dict[str, Any]:
    return bind_message(edge, session, go_bind(proto, url, **extra))


def test_endpoints_named_by_url_are_bound_as_hostnames_and_addresses_are(
    edge: AgentControl, store: Store
) -> None:
    _, token, _ = credential(store, [])
    session = auth(edge, token)
    https = url_bind(edge, session, "https", "https://App.Go.Example")
    assert https["Error"] == "" and https["URL"] == "https://app.go.example:8444"
    assert https["Opts"]["URL"] == https["URL"] and https["Opts"]["Hostname"] == ""
    assert edge.registry.https_tunnel("app.go.example") is not None
    assert (
        url_bind(edge, session, "http", "http://app.go.example:8080")["URL"] == "http://app.go.example:8080"
    )
    assert url_bind(edge, session, "tls", "tls://tls.go.example")["URL"] == "tls://tls.go.example:8443"
    assigned = url_bind(edge, session, "https", "https://")["URL"]
    assert assigned.startswith("https://") and assigned.endswith(".burrow.localhost:8444")
    tcp = url_bind(edge, session, "tcp", "tcp://")["URL"]
    port = int(tcp.rsplit(":", 1)[1])
    assert tcp == f"tcp://127.0.0.1:{port}" and 20000 <= port < 20003
    other = next(p for p in range(20000, 20003) if p != port)
    assert url_bind(edge, session, "tcp", f"tcp://127.0.0.1:{other}")["URL"] == f"tcp://127.0.0.1:{other}"
    # The name has one holder, whichever generation of Bind asks for it.
    second = auth(edge, token)
    with pytest.raises(BurrowError) as error:
        bind(edge, second, "https", Hostname="app.go.example")
    assert code(error) == "ERR_NGROK_334"
    with pytest.raises(BurrowError) as error:
        url_bind(edge, second, "https", "https://app.go.example")
    assert code(error) == "ERR_NGROK_334"


def test_url_binds_pass_the_acl_and_refuse_what_they_cannot_mean(edge: AgentControl, store: Store) -> None:
    credential_id, token, _ = credential(store, ["bind:*.go.example", "bind:127.0.0.1:20001"])
    session = auth(edge, token)
    assert url_bind(edge, session, "https", "https://a.go.example")["Error"] == ""
    refusals = [
        (("https", "https://evil.org"), "ERR_NGROK_316"),  # the ACL, as for a Hostname
        (("https", "https://"), "ERR_NGROK_316"),  # an assigned name passes the same check
        (("tcp", "tcp://127.0.0.1:20002"), "ERR_NGROK_308"),
        (("tcp", "tcp://"), "ERR_NGROK_356"),
        (("tcp", "tcp://elsewhere.example:20001"), "ERR_NGROK_307"),
        (("https", "http://b.go.example"), "ERR_NGROK_301"),  # the scheme is not the Proto
        (("https", "https://b.go.example:9999"), "ERR_NGROK_301"),  # not the port served
        (("https", "https://b.go.example/path"), "ERR_NGROK_301"),
        (("https", "https://user@b.go.example"), "ERR_NGROK_301"),
        (("https", "b.go.example"), "ERR_NGROK_301"),
        (("https", "https://bad_name.go.example"), "ERR_NGROK_301"),
        (("https", "https://svc.internal"), "ERR_NGROK_301"),  # .internal: only with Bindings internal
    ]
    for (proto, url), expected in refusals:
        with pytest.raises(BurrowError) as error:
            url_bind(edge, session, proto, url)
        assert code(error) == expected, (url, shown(error))
    assert credential_id in shown_refusal(edge, session, "https", "https://evil.org")
    # What Burrow does not do yet is refused, never ignored: a pooled endpoint bound alone,
    # or an endpoint of another binding published publicly, is not what its agent asked for.
    with pytest.raises(BurrowError) as error:
        url_bind(edge, session, "https", "https://c.go.example", Bindings=["kubernetes"])
    assert code(error) == "ERR_NGROK_90301"
    with pytest.raises(BurrowError) as error:  # internal, but not a .internal name
        url_bind(edge, session, "https", "https://c.go.example", Bindings=["internal"])
    assert code(error) == "ERR_NGROK_301"
    assert url_bind(edge, session, "https", "https://c.go.example", Bindings=["public"])["Error"] == ""
    with pytest.raises(BurrowError) as error:
        bind_message(
            edge,
            session,
            {"Id": "", "Proto": "https", "Opts": {"URL": "https://d.go.example", "Hostname": "e.go.example"}},
        )
    assert code(error) == "ERR_NGROK_301"
    assert edge.registry.https_tunnel("d.go.example") is None
    assert edge.registry.https_tunnel("e.go.example") is None


def shown_refusal(edge: AgentControl, session: Authenticated, proto: str, url: str) -> str:
    with pytest.raises(BurrowError) as error:
        url_bind(edge, session, proto, url)
    return shown(error)


def test_pooled_binds_of_one_account_share_the_name_and_take_turns(edge: AgentControl, store: Store) -> None:
    _, token, account = credential(store, [])
    first, second = auth(edge, token), auth(edge, token)
    other_user = store.create_account("other@example.com")[0]
    _, other_token = store.create_credential(other_user.account_id, other_user.id, "", "", [])
    stranger = auth(edge, other_token)
    url = "https://pool.go.example"
    a = url_bind(edge, first, "https", url, PoolingEnabled=True)
    b = url_bind(edge, second, "https", url, PoolingEnabled=True)
    assert a["URL"] == b["URL"] == "https://pool.go.example:8444" and a["Id"] != b["Id"]
    served = {edge.registry.https_tunnel("pool.go.example").session_id for _ in range(4)}  # type: ignore[union-attr]
    assert served == {first.session.id, second.session.id}
    # Neither another account's pooled bind nor this account's unpooled one joins the pool.
    for session, extra in ((stranger, {"PoolingEnabled": True}), (auth(edge, token), {})):
        with pytest.raises(BurrowError) as error:
            url_bind(edge, session, "https", url, **extra)
        assert code(error) == "ERR_NGROK_334"
    # The member holding the cluster's binding leaves: the name passes to the other member.
    holder = edge.writes.cluster
    edge.end(first)
    asyncio.run(edge.writes.run(lambda: None))
    assert {edge.registry.https_tunnel("pool.go.example").session_id for _ in range(4)} == {second.session.id}  # type: ignore[union-attr]
    with pytest.raises(BurrowError) as error:
        url_bind(edge, stranger, "https", url, PoolingEnabled=True)
    assert code(error) == "ERR_NGROK_334"  # still the pool's
    with store.engine.connect() as connection:  # and the cluster's binding is the other member's
        bound = connection.execute(
            select(schema.cluster_bindings.c.session_id).where(
                schema.cluster_bindings.c.name == "pool.go.example"
            )
        ).scalar()
    assert bound == second.session.id
    edge.end(second)
    asyncio.run(edge.writes.run(lambda: None))
    assert edge.registry.https_tunnel("pool.go.example") is None
    assert url_bind(edge, stranger, "https", url)["Error"] == ""  # free once the pool is empty
    assert holder.tunnels(account) == []
