"""Several ``burrow serve`` nodes on one PostgreSQL, with real SDK agents: one registry for
the cluster, the API of any node sees and stops every node's sessions, revocation through
any node reaches all of them, a dead node's names come free when its lease runs out."""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from burrow.edge.certs import ensure_name_certificate, ensure_server_certificate
from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow, free_port
from tests.postgres import PostgresServer

LEASE_SECONDS = 3


class ClusterNode(BurrowServer):
    """A node joining an existing cluster: its own data directory, no account of its own."""

    def __init__(self, data_dir: Path, api_key: str) -> None:
        # The cluster's CA comes from the database at start: agents trust every node.
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.api_key = api_key
        self.env: dict[str, str] = {}  # the cluster fixture sets the shared database and secret
        self.process = None


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., list[BurrowServer]]]:
    # Every node (and burrow init) reads the same database and the same token secret.
    monkeypatch.setenv("BURROW_DATABASE_URL", postgres_url)
    monkeypatch.setenv("BURROW_SECRET_KEY", secrets.token_hex(32))
    started: list[BurrowServer] = []

    def start(count: int, relay: bool = False, extra: list[list[str]] | None = None) -> list[BurrowServer]:
        first = BurrowServer(tmp_path / "node0")

        def options(number: int) -> list[str]:
            given = ["--lease-seconds", str(LEASE_SECONDS), "--node-name", f"node{number}"]
            given += extra[number] if extra else []
            return given + (["--relay-addr", relays[number]] if relay else [])

        relays = [f"127.0.0.1:{free_port()}" for _ in range(count)]
        started.append(first.start(*options(0)))
        for number in range(1, count):
            node = ClusterNode(tmp_path / f"node{number}", first.api_key)
            started.append(node.start(*options(number)))
        for node, address in zip(started, relays, strict=False):
            node.relay_addr = address  # type: ignore[attr-defined]
        return list(started)

    yield start
    for node in started:
        if node.process is not None:
            node.stop()


def credential(node: BurrowServer, acl: list[str] | None = None) -> dict[str, Any]:
    with node.client() as http:
        response = http.post("/credentials", json={"description": "agent", "acl": acl or []})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def public_get(node: BurrowServer, host: str) -> httpx.Response:
    return httpx.get(f"http://{node.http_addr}/", headers={"Host": host}, timeout=30)


def sessions(node: BurrowServer) -> list[dict[str, Any]]:
    with node.client() as http:
        response = http.get("/tunnel_sessions")
        assert response.status_code == 200, response.text
        return response.json()["tunnel_sessions"]  # type: ignore[no-any-return]


def within(seconds: float, condition: Callable[[], bool], what: str) -> float:
    """Wait for ``condition``; how long it took (fails past ``seconds``)."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < seconds, what
        time.sleep(0.05)
    return time.monotonic() - began


def test_the_api_of_any_node_sees_and_stops_the_clusters_sessions(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2)
    made = credential(a)
    agent = start_agent(b, made["token"], [{"name": "web", "kind": "http", "domain": "b.burrow.localhost"}])
    assert public_get(b, "b.burrow.localhost").status_code == 200
    [seen] = sessions(a)
    assert seen["credential"]["id"] == made["id"]
    with a.client() as http:
        [tunnel] = http.get("/tunnels").json()["tunnels"]
        assert tunnel["public_url"] == agent.url("web") and tunnel["tunnel_session"]["id"] == seen["id"]
        assert http.get(f"/tunnel_sessions/{seen['id']}").json()["id"] == seen["id"]
    # The same hostname is refused on another node, by the database's constraint.
    other = start_agent(
        a, credential(a)["token"], [{"name": "web", "kind": "http", "domain": "b.burrow.localhost"}]
    )
    assert any("ERR_NGROK_334" in part for part in other.error("web"))
    # Stopping through A reaches B.
    with a.client() as http:
        assert http.post(f"/tunnel_sessions/{seen['id']}/stop", json={}).status_code == 204
    within(1.0, lambda: not any(s["id"] == seen["id"] for s in sessions(b)), "B kept the stopped session")
    within(1.0, lambda: public_get(b, "b.burrow.localhost").status_code == 404, "B still routes the tunnel")
    status = json.loads(burrow("cluster", "status", "--data-dir", str(a.data_dir), "--json").stdout)
    assert sorted(node["name"] for node in status) == ["node0", "node1"]
    assert all(node["live"] and 0 < node["lease_seconds_left"] <= LEASE_SECONDS for node in status)


def test_revocation_through_one_node_reaches_the_others_within_a_second(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2)
    with a.client() as http:
        key = http.post("/api_keys", json={"description": "doomed"}).json()
    with b.client(key["token"]) as http:
        assert http.get("/api_keys").status_code == 200
    with a.client() as http:
        assert http.delete(f"/api_keys/{key['id']}").status_code == 204
    with b.client(key["token"]) as http:
        within(1.0, lambda: http.get("/api_keys").status_code == 401, "B accepted a deleted API key")

    made = credential(a)
    start_agent(b, made["token"], [{"name": "web", "kind": "http", "domain": "doomed.burrow.localhost"}])
    assert public_get(b, "doomed.burrow.localhost").status_code == 200
    with a.client() as http:
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
    within(
        1.0, lambda: public_get(b, "doomed.burrow.localhost").status_code == 404, "the session outlived it"
    )
    within(1.0, lambda: sessions(a) == [], "A still lists the revoked session")


def test_a_killed_nodes_names_come_free_within_its_lease(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2)
    made = credential(a)
    endpoints = [{"name": "web", "kind": "http", "domain": "moving.burrow.localhost"}]
    start_agent(b, made["token"], endpoints)
    assert b.process is not None
    b.process.kill()  # kill -9: no goodbye, its rows stay until its lease runs out
    b.process.wait()
    b.process = None
    killed_at = time.monotonic()
    while True:
        agent = start_agent(a, made["token"], endpoints)
        if "url" in agent.ready["ready"]["web"]:
            break
        assert any("ERR_NGROK_334" in part for part in agent.error("web"))
        agent.stop()
        assert time.monotonic() - killed_at < LEASE_SECONDS * 4 / 3 + 3, "the dead node's name stayed bound"
    assert public_get(a, "moving.burrow.localhost").json()["host"] == "moving.burrow.localhost"
    assert [s["credential"]["id"] for s in sessions(a)] == [made["id"]]


def test_a_public_request_to_any_node_reaches_the_agent_on_another(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2, relay=True)
    made = credential(a, ["bind:*.burrow.localhost"])
    start_agent(b, made["token"], [{"name": "web", "kind": "http", "domain": "far.burrow.localhost"}])
    start_agent(
        a, credential(a)["token"], [{"name": "web", "kind": "http", "domain": "near.burrow.localhost"}]
    )
    # Through A, twice on one connection: the agent on B answers both.
    with httpx.Client(base_url=f"http://{a.http_addr}", timeout=30) as http:
        for path in ("/one", "/two"):
            response = http.get(path, headers={"Host": "far.burrow.localhost"})
            assert response.status_code == 200, response.text
            assert response.json() == {"service": "http", "path": path, "host": "far.burrow.localhost"}
        # The connection now ends at B, which does not hold near.: 421, closed; a new one works.
        misdirected = http.get("/", headers={"Host": "near.burrow.localhost"})
        assert misdirected.status_code == 421 and "ERR_NGROK_90421" in misdirected.text
        assert (
            http.get("/", headers={"Host": "near.burrow.localhost"}).json()["host"] == "near.burrow.localhost"
        )
    assert public_get(a, "nobody.burrow.localhost").status_code == 404


def test_only_a_node_may_use_the_relay(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2, relay=True)
    start_agent(
        b, credential(a)["token"], [{"name": "web", "kind": "http", "domain": "far.burrow.localhost"}]
    )
    request = (
        b'{"listener": "http", "client": ["192.0.2.7", 4242]}\n'
        b"GET / HTTP/1.1\r\nHost: far.burrow.localhost\r\n\r\n"
    )

    def through_relay(cert: Path | None, key: Path | None) -> bytes:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(a.data_dir / "ca.pem")
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
        host, port = b.relay_addr.rsplit(":", 1)  # type: ignore[attr-defined]
        try:
            raw = socket.create_connection((host, int(port)), timeout=10)
            with raw, context.wrap_socket(raw) as tls:
                tls.sendall(request)
                return tls.recv(65536)
        except (OSError, ssl.SSLError):
            return b""

    # A node's relay certificate passes, and B serves the request as the client named.
    answer = through_relay(a.data_dir / "relay.pem", a.data_dir / "relay-key.pem")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    # No certificate, or one the same CA issued for a public name: nothing is served.
    assert through_relay(None, None) == b""
    named = ensure_name_certificate(a.data_dir, "evil.burrow.localhost")
    assert through_relay(named.cert_path, named.key_path) == b""


def test_a_tls_connection_to_any_node_reaches_the_agent_on_another(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    a, b = cluster(2, relay=True)
    local = ensure_server_certificate(tmp_path / "agent-tls", ["secure.burrow.localhost"])
    start_agent(
        b,
        credential(a)["token"],
        [{"name": "tls", "kind": "tls", "domain": "secure.burrow.localhost"}],
        tls_cert=str(local.cert_path),
        tls_key=str(local.key_path),
    )
    context = ssl.create_default_context(cafile=str(local.ca_path))
    host, port = a.tls_addr.rsplit(":", 1)  # node A: SNI names a tunnel on B, bytes never decrypted
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="secure.burrow.localhost") as tls,
    ):
        tls.sendall(b"hello")
        assert tls.recv(100) == b"tls:hello"


def test_a_tcp_connection_to_any_node_reaches_the_agent_on_another(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    # The same public port on both nodes (as behind one load balancer), on two loopback addresses.
    port = free_port()
    ports = ["--tcp-ports", f"{port}-{port}"]
    a, b = cluster(
        2, relay=True, extra=[[*ports, "--tcp-host", "127.0.0.2"], [*ports, "--tcp-host", "127.0.0.1"]]
    )
    agent = start_agent(b, credential(a)["token"], [{"name": "tcp", "kind": "tcp"}])
    assert agent.url("tcp") == f"tcp://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.2", port), timeout=10) as connection:  # node A
        for message in (b"ping", b"x" * 100_000):
            connection.sendall(message)
            received = b""
            while len(received) < len(message):
                received += connection.recv(65536)
            assert received == message


# PostgreSQL LISTEN/NOTIFY -----------------------------------------------------------------

LISTENING = "listening for database notifications"
# Polling once a minute: what happens within a second came through a notification.
SLOW_POLLING = ["--reconcile-seconds", "60"]


def listening(node: BurrowServer, times: int = 1) -> bool:
    return node.log().count(LISTENING) >= times


def test_notifications_alone_end_sessions_stop_them_and_refuse_keys_on_other_nodes(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2, extra=[SLOW_POLLING, SLOW_POLLING])
    within(5, lambda: listening(a) and listening(b), "a node does not listen for notifications")
    endpoints = [{"name": "web", "kind": "http", "domain": "notified.burrow.localhost"}]
    # A credential deleted on A ends its session on B.
    made = credential(a)
    start_agent(b, made["token"], endpoints)
    assert public_get(b, "notified.burrow.localhost").status_code == 200
    with a.client() as http:
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
    within(1.0, lambda: public_get(b, "notified.burrow.localhost").status_code == 404, "B kept the session")
    # A stop sent through A reaches B.
    start_agent(b, credential(a)["token"], endpoints)
    [session] = sessions(a)
    with a.client() as http:
        assert http.post(f"/tunnel_sessions/{session['id']}/stop", json={}).status_code == 204
    # (The SDK answers a stop by reconnecting: a new session, with a new id.)
    within(1.0, lambda: all(s["id"] != session["id"] for s in sessions(b)), "B kept the stopped session")
    # An API key B has authenticated (and cached) is refused there once A deletes it.
    with a.client() as http:
        key = http.post("/api_keys", json={"description": "doomed"}).json()
    with b.client(key["token"]) as http:
        for _ in range(3):
            assert http.get("/api_keys").status_code == 200
        with a.client() as admin:
            assert admin.delete(f"/api_keys/{key['id']}").status_code == 204
        within(1.0, lambda: http.get("/api_keys").status_code == 401, "B accepted a deleted API key")
    assert "database notifications lost" not in a.log() + b.log()  # no fast polling meanwhile


def test_after_a_postgres_restart_the_notifications_work_again(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent], postgres: PostgresServer
) -> None:
    a, b = cluster(2, extra=[SLOW_POLLING, SLOW_POLLING])
    within(5, lambda: listening(a) and listening(b), "a node does not listen for notifications")
    postgres.stop()
    try:
        within(5, lambda: "database notifications lost" in b.log(), "B did not notice")
    finally:
        postgres.start()
    within(10, lambda: listening(a, 2) and listening(b, 2), "a node did not listen again")
    made = credential(a)
    start_agent(b, made["token"], [{"name": "web", "kind": "http", "domain": "again.burrow.localhost"}])
    assert public_get(b, "again.burrow.localhost").status_code == 200
    with a.client() as http:
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
    within(1.0, lambda: public_get(b, "again.burrow.localhost").status_code == 404, "B kept the session")


def test_an_https_connection_to_any_node_reaches_the_https_endpoint_on_another(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    a, b = cluster(2, relay=True)
    name = "private.burrow.localhost"
    agent = start_agent(
        b, credential(a)["token"], [{"name": "web", "kind": "http", "domain": name, "scheme": "https"}]
    )
    assert agent.url("web").startswith(f"https://{name}:")
    # Node A holds no tunnel for the name: it relays the ClientHello, still encrypted, to B,
    # which terminates TLS with its certificate from the cluster's CA (A's ca.pem is B's).
    context = ssl.create_default_context(cafile=str(a.ca_path))
    host, port = a.https_addr.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        assert tls.getpeercert() is not None  # verified against the cluster's CA
        for path in ("/one", "/two"):  # two requests on the one relayed connection
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
            head, body = _response(tls)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert json.loads(body) == {"service": "http", "path": path, "host": name}
        tls.sendall(f"GET /headers HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        seen = {k.lower(): v for k, v in json.loads(_response(tls)[1])["headers"]}
        assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-for"] == "127.0.0.1"
    # A name that no node serves still gets no certificate.
    with (
        pytest.raises((ssl.SSLError, OSError)),
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="nobody.burrow.localhost"),
    ):
        pass


def _response(tls: ssl.SSLSocket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.startswith(b"content-length:")))
    while len(body) < length:
        body += tls.recv(65536)
    return head, body


def test_a_pool_spans_nodes_and_outlives_a_member(cluster: Callable[..., list[BurrowServer]]) -> None:
    from tests.edge.malicious_agent import AgentError, MaliciousAgent
    from tests.edge.test_control import go_bind
    from tests.edge.test_url_endpoints import answering

    a, b = cluster(2, relay=True)
    token = credential(a)["token"]
    stranger_key = a.new_account("stranger@example.com")
    with a.client(stranger_key) as http:
        stranger = http.post("/credentials", json={"acl": []}).json()["token"]
    pooled = go_bind("http", "http://pool.burrow.localhost", PoolingEnabled=True)

    def member(node: BurrowServer, body: bytes, secret: str = token) -> MaliciousAgent:
        agent = MaliciousAgent(node.agent_addr, node.ca_path, secret, "", bind=pooled).start()
        agent.script = answering(body)
        return agent

    on_a, on_b = member(a, b"on-a"), member(b, b"on-b")
    try:
        assert public_get(a, "pool.burrow.localhost").text == "on-a"  # each node serves its own
        assert public_get(b, "pool.burrow.localhost").text == "on-b"
        with pytest.raises(AgentError, match="ERR_NGROK_334"):
            member(b, b"theirs", stranger)  # another account's pooled bind: refused cluster-wide
        on_a.close()
        # A's member is gone: A relays to the pool's member on B.
        within(10, lambda: public_get(a, "pool.burrow.localhost").text == "on-b", "A to relay to B")
        with pytest.raises(AgentError, match="ERR_NGROK_334"):
            member(a, b"theirs", stranger)  # the pool, not the name, outlived the member
    finally:
        on_a.close()
        on_b.close()


def test_forward_internal_reaches_an_internal_endpoint_held_by_another_node(
    cluster: Callable[..., list[BurrowServer]], start_agent: Callable[..., Agent]
) -> None:
    """A's public endpoint forwards to its account's internal endpoint bound on B: the request
    goes over the relay, B runs the internal endpoint's policy and answers. Another account's
    policy naming the same URL does not reach it; with B's agent gone, 404, or, with on_error
    continue, the forwarding endpoint's own upstream. The internal endpoint is bound as
    ngrok-go binds one (the SDKs cannot); the on_error continue endpoint is the PyPI SDK's."""
    from tests.edge.malicious_agent import MaliciousAgent
    from tests.edge.test_control import go_bind
    from tests.edge.test_url_endpoints import answering

    a, b = cluster(2, relay=True)
    token = credential(a)["token"]
    stranger_key = a.new_account("stranger@example.com")
    with a.client(stranger_key) as http:
        stranger = http.post("/credentials", json={"acl": []}).json()["token"]

    def policy(on_error: str) -> str:
        return json.dumps(
            {
                "on_http_request": [
                    {
                        "actions": [
                            {"type": "add-headers", "config": {"headers": {"x-from-front": "yes"}}},
                            {
                                "type": "forward-internal",
                                "config": {"url": "https://api.internal", "on_error": on_error},
                            },
                        ]
                    }
                ],
                "on_http_response": [
                    {"actions": [{"type": "add-headers", "config": {"headers": {"x-front": "yes"}}}]}
                ],
            }
        )

    def forwarding(url: str) -> dict[str, Any]:
        bind = go_bind("http", url)
        bind["Opts"]["TrafficPolicy"] = policy("halt")
        return bind

    internal = go_bind("https", "https://api.internal", Bindings=["internal"])
    internal["Opts"]["TrafficPolicy"] = json.dumps(
        {
            "on_http_response": [
                {"actions": [{"type": "add-headers", "config": {"headers": {"x-internal": "yes"}}}]}
            ]
        }
    )

    def agent(node: BurrowServer, secret: str, bind: dict[str, Any], body: bytes) -> MaliciousAgent:
        started = MaliciousAgent(node.agent_addr, node.ca_path, secret, "", bind=bind).start()
        started.script = answering(body)
        return started

    def post(host: str) -> httpx.Response:
        return httpx.post(
            f"http://{a.http_addr}/x?q=1", headers={"Host": host}, content=b"the body", timeout=30
        )

    api = agent(b, token, internal, b"internal-on-b")
    front = agent(a, token, forwarding("http://front.burrow.localhost"), b"front-on-a")
    sdk_endpoint = {"name": "web", "kind": "http", "domain": "fallback.burrow.localhost"}
    start_agent(a, token, [{**sdk_endpoint, "options": [["traffic_policy", policy("continue")]]}])
    theirs = agent(a, stranger, forwarding("http://theirs.burrow.localhost"), b"theirs-on-a")
    try:
        assert api.bound["Error"] == "" and front.bound["Error"] == ""
        # Twice on one client connection: each request goes over the relay to B's agent.
        with httpx.Client(base_url=f"http://{a.http_addr}", timeout=30) as http:
            for _ in range(2):
                reached = http.post("/x?q=1", headers={"Host": "front.burrow.localhost"}, content=b"the body")
                assert reached.status_code == 200 and reached.text == "internal-on-b", reached.text
                # The internal endpoint's response phase ran (on B), the forwarding one's did not.
                assert reached.headers.get("x-internal") == "yes" and "x-front" not in reached.headers
        assert front.requests() == []
        forwarded = api.requests()[0]
        head, _, body = forwarded.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /x?q=1 HTTP/1.1\r\n") and body == b"the body"
        fields = head.lower().split(b"\r\n")
        assert b"x-from-front: yes" in fields  # the forwarding policy's edits went along
        assert fields.count(b"x-forwarded-for: 127.0.0.1") == 1  # the client, once
        assert b"host: front.burrow.localhost" in fields
        assert post("fallback.burrow.localhost").text == "internal-on-b"
        # Another account's policy naming the same URL does not reach it.
        refused = post("theirs.burrow.localhost")
        assert refused.status_code == 404 and "api.internal" in refused.text
        assert theirs.requests() == [] and len(api.requests()) == 3
        # The internal endpoint is not public, on either node.
        assert public_get(b, "api.internal").status_code == 404
        assert public_get(a, "api.internal").status_code == 404
        api.close()
        within(10, lambda: post("front.burrow.localhost").status_code == 404, "the forward to stop")
        assert "api.internal" in post("front.burrow.localhost").text and front.requests() == []
        # on_error: continue goes on to the forwarding endpoint's own upstream.
        answer = post("fallback.burrow.localhost").json()
        assert answer["received"] == len(b"the body")  # the SDK's service took the POST
        assert len(api.requests()) == 3
    finally:
        for started in (api, front, theirs):
            started.close()


def test_a_relayed_forward_internal_reaches_only_its_account_s_internal_endpoint(
    cluster: Callable[..., list[BurrowServer]],
) -> None:
    """The relay's ``internal`` door on B, spoken to directly with a node's relay certificate:
    it routes to the named account's internal endpoint, never to a public name of that
    account nor to the internal endpoint of another account's name."""
    from tests.edge.malicious_agent import MaliciousAgent
    from tests.edge.test_control import go_bind
    from tests.edge.test_url_endpoints import answering

    a, b = cluster(2, relay=True)
    token = credential(a)["token"]
    bound = []
    for bind, body in (
        (go_bind("https", "https://api.internal", Bindings=["internal"]), b"internal"),
        (go_bind("http", "http://pub.burrow.localhost"), b"public"),
    ):
        started = MaliciousAgent(b.agent_addr, b.ca_path, token, "", bind=bind).start()
        started.script = answering(body)
        bound.append(started)
    try:
        engine = sqlalchemy.create_engine(os.environ["BURROW_DATABASE_URL"])  # the cluster's registry
        with engine.connect() as connection:
            query = "SELECT name FROM cluster_bindings WHERE kind = 'internal'"
            (name,) = connection.execute(sqlalchemy.text(query)).scalars()
        engine.dispose()
        account = name.split("/")[0]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(a.data_dir / "ca.pem")
        context.load_cert_chain(a.data_dir / "relay.pem", a.data_dir / "relay-key.pem")

        def internal(account_id: str, host: str, scheme: str = "http") -> bytes:
            header = {"listener": "internal", "account": account_id, "host": host, "scheme": scheme}
            header |= {"hops": 1, "client": ["192.0.2.7", 4242]}
            relay_host, port = b.relay_addr.rsplit(":", 1)  # type: ignore[attr-defined]
            raw = socket.create_connection((relay_host, int(port)), timeout=10)
            with raw, context.wrap_socket(raw) as tls:
                tls.sendall(json.dumps(header).encode() + b"\nGET / HTTP/1.1\r\nHost: front.example\r\n\r\n")
                answer = b""
                while b"\r\n\r\n" not in answer or not answer.endswith((b"internal", b"public", b"</html>")):
                    try:
                        chunk = tls.recv(65536)
                    except (OSError, ssl.SSLError):  # aborted: as closed
                        chunk = b""
                    if not chunk:
                        break
                    answer += chunk
                return answer

        reached = internal(account, "api.internal")
        assert reached.startswith(b"HTTP/1.1 200") and reached.endswith(b"internal"), reached
        assert b"x-forwarded-for: 192.0.2.7" in bound[0].requests()[0].lower()
        # From an https endpoint's policy: the internal endpoint is told the client's scheme.
        assert internal(account, "api.internal", "https").startswith(b"HTTP/1.1 200")
        assert b"x-forwarded-proto: https" in bound[0].requests()[1].lower()
        assert internal(account, "api.internal", "ftp") == b""  # no such scheme: the relay closes
        assert internal(account, "pub.burrow.localhost").startswith(b"HTTP/1.1 404")  # a public name
        assert internal("acct_someone_else", "api.internal").startswith(b"HTTP/1.1 404")
        assert len(bound[0].requests()) == 2 and bound[1].requests() == []
    finally:
        for started in bound:
            started.close()
