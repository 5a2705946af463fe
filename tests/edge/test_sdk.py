"""Unmodified ngrok agents (the PyPI ``ngrok`` SDK, in its own environment) against Burrow.

The SDK and the official REST client both install the import package ``ngrok``, so the
agent runs as a subprocess under .venvs/ngrok-sdk (made by ``make``); see sdk_agent.py.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from burrow.edge.certs import ensure_server_certificate
from tests.edge.conftest import Agent
from tests.harness import BurrowServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("edge") / "data").start(
        "--label-route", "web.burrow.localhost=app=web"
    )
    yield server
    server.stop()


def credential(server: BurrowServer, acl: list[str]) -> dict[str, Any]:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "agent", "acl": acl})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def public_get(server: BurrowServer, host: str, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://{server.http_addr}{path}", headers={"Host": host}, timeout=30)


def test_http_tunnel_on_an_allowed_domain(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    token = credential(server, ["bind:*.allowed.example"])["token"]
    agent = start_agent(server, token, [{"name": "web", "kind": "http", "domain": "app.allowed.example"}])
    port = server.http_addr.rsplit(":", 1)[1]
    assert agent.url("web") == f"http://app.allowed.example:{port}"
    response = public_get(server, "app.allowed.example", "/hello?x=1")
    assert response.status_code == 200
    assert response.json() == {"service": "http", "path": "/hello?x=1", "host": "app.allowed.example"}
    missing = public_get(server, "other.allowed.example")
    assert missing.status_code == 404 and "ERR_NGROK_3200" in missing.text


def test_denied_domain_is_refused_with_316(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    made = credential(server, ["bind:only.example"])
    agent = start_agent(server, made["token"], [{"name": "web", "kind": "http", "domain": "evil.example"}])
    error = agent.error("web")
    assert "ERR_NGROK_316" in error and any(made["id"] in part for part in error)
    assert public_get(server, "evil.example").status_code == 404
    server.wait_log(
        lambda entry: (
            entry.get("message") == "agent request refused"
            and entry.get("error") == "ERR_NGROK_316"
            and "evil.example" in json.dumps(entry)
        )
    )


def test_bad_token_is_refused_with_107(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    made = credential(server, [])
    with server.client() as http:
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
    agent = start_agent(server, made["token"], [])
    assert "ERR_NGROK_107" in agent.ready["error"]
    malformed = start_agent(server, "not-a-token", [])
    assert "ERR_NGROK_105" in malformed.ready["error"]


def test_tcp_tunnel_carries_traffic(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    token = credential(server, [])["token"]
    agent = start_agent(server, token, [{"name": "tcp", "kind": "tcp"}])
    assert agent.url("tcp") == f"tcp://127.0.0.1:{server.tcp_port}"
    with socket.create_connection(("127.0.0.1", server.tcp_port), timeout=10) as connection:
        for message in (b"ping", b"x" * 100_000):
            connection.sendall(message)
            received = b""
            while len(received) < len(message):
                received += connection.recv(65536)
            assert received == message


def test_tcp_random_address_needs_an_open_acl(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    made = credential(server, ["bind:*.example.com"])
    agent = start_agent(server, made["token"], [{"name": "tcp", "kind": "tcp"}])
    assert "ERR_NGROK_356" in agent.error("tcp")
    specific = credential(server, [f"bind:127.0.0.1:{server.tcp_port + 1}"])
    agent = start_agent(
        server,
        specific["token"],
        [{"name": "tcp", "kind": "tcp", "remote_addr": f"127.0.0.1:{server.tcp_port}"}],
    )
    assert "ERR_NGROK_308" in agent.error("tcp")


def test_tls_tunnel_carries_traffic_without_decrypting(
    server: BurrowServer, start_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    local = ensure_server_certificate(tmp_path, ["secure.burrow.localhost"])
    token = credential(server, ["bind:secure.burrow.localhost"])["token"]
    agent = start_agent(
        server,
        token,
        [{"name": "tls", "kind": "tls", "domain": "secure.burrow.localhost"}],
        tls_cert=str(local.cert_path),
        tls_key=str(local.key_path),
    )
    assert agent.url("tls").startswith("tls://secure.burrow.localhost")
    context = ssl.create_default_context(cafile=str(local.ca_path))
    host, port = server.tls_addr.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="secure.burrow.localhost") as tls,
    ):
        tls.sendall(b"hello")
        assert tls.recv(100) == b"tls:hello"


def test_labeled_tunnels_receive_traffic_in_turn(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    token = credential(server, ["bind:app=web"])["token"]
    first = start_agent(
        server, token, [{"name": "l", "kind": "labeled", "labels": {"app": "web"}}], label="one"
    )
    second = start_agent(
        server, token, [{"name": "l", "kind": "labeled", "labels": {"app": "web"}}], label="two"
    )
    assert "id" in first.ready["ready"]["l"] and "id" in second.ready["ready"]["l"]
    seen = {public_get(server, "web.burrow.localhost").json()["service"] for _ in range(6)}
    assert seen == {"one", "two"}
    denied = start_agent(server, token, [{"name": "l", "kind": "labeled", "labels": {"app": "api"}}])
    assert "ERR_NGROK_399" in denied.error("l")


def test_20_mib_up_and_down_arrive_intact(server: BurrowServer, start_agent: Callable[..., Agent]) -> None:
    token = credential(server, [])["token"]
    start_agent(server, token, [{"name": "web", "kind": "http", "domain": "bulk.burrow.localhost"}])
    size = 20 * 1024 * 1024
    down = public_get(server, "bulk.burrow.localhost", f"/bytes/{size}")
    expected = (bytes(range(256)) * 4096 * (size // (256 * 4096) + 1))[:size]
    assert down.status_code == 200 and len(down.content) == size
    assert hashlib.sha256(down.content).hexdigest() == hashlib.sha256(expected).hexdigest()
    payload = bytes(reversed(expected))
    up = httpx.post(
        f"http://{server.http_addr}/sha256",
        content=payload,
        headers={"Host": "bulk.burrow.localhost"},
        timeout=60,
    )
    assert up.json() == {"received": size, "sha256": hashlib.sha256(payload).hexdigest(), "framing": "length"}


def test_deleting_the_credential_ends_the_session_within_a_second(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    made = credential(server, [])
    start_agent(server, made["token"], [{"name": "web", "kind": "http", "domain": "doomed.burrow.localhost"}])
    assert public_get(server, "doomed.burrow.localhost").status_code == 200
    with server.client() as http:
        sessions = http.get("/tunnel_sessions").json()["tunnel_sessions"]
        mine = [s for s in sessions if s["credential"]["id"] == made["id"]]
        assert len(mine) == 1
        deleted_at = time.monotonic()
        assert http.delete(f"/credentials/{made['id']}").status_code == 204
        while True:
            live = [
                s for s in http.get("/tunnel_sessions").json()["tunnel_sessions"] if s["id"] == mine[0]["id"]
            ]
            if not live and public_get(server, "doomed.burrow.localhost").status_code == 404:
                break
            assert time.monotonic() - deleted_at < 1.0, "the session outlived its credential"
            time.sleep(0.05)


def test_live_sessions_and_tunnels_are_listed(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    made = credential(server, [])
    agent = start_agent(
        server,
        made["token"],
        [
            {"name": "web", "kind": "http", "domain": "listed.burrow.localhost"},
            {"name": "l", "kind": "labeled", "labels": {"team": "x"}},
        ],
    )
    with server.client() as http:
        sessions = [
            s
            for s in http.get("/tunnel_sessions").json()["tunnel_sessions"]
            if s["credential"]["id"] == made["id"]
        ]
        assert len(sessions) == 1
        session = sessions[0]
        assert session["credential"]["uri"].endswith(f"/credentials/{made['id']}")
        assert session["os"] and session["agent_version"] and session["ip"] == "127.0.0.1"
        assert http.get(f"/tunnel_sessions/{session['id']}").json() == session
        tunnels = [
            t for t in http.get("/tunnels").json()["tunnels"] if t["tunnel_session"]["id"] == session["id"]
        ]
        by_url = {t["public_url"]: t for t in tunnels}
        assert agent.url("web") in by_url and len(tunnels) == 2
        assert [t["labels"] for t in tunnels if t["labels"]] == [{"team": "x"}]
        # Stopping it through the API ends it.
        assert http.post(f"/tunnel_sessions/{session['id']}/stop").status_code == 204
        deadline = time.monotonic() + 5
        while http.get(f"/tunnel_sessions/{session['id']}").status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_official_client_lists_live_sessions_and_tunnels(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    from tests.api.test_official_client import run_official

    made = credential(server, [])
    agent = start_agent(
        server,
        made["token"],
        [{"name": "web", "kind": "http", "domain": "official.burrow.localhost", "scheme": "https"}],
    )
    out = run_official(
        server,
        """
        out["sessions"] = [(s.id, s.credential.id, s.os, s.region) for s in client.tunnel_sessions.list()]
        out["tunnels"] = [
            (t.public_url, t.proto, t.tunnel_session.id, t.forwards_to) for t in client.tunnels.list()
        ]
        """,
    )
    mine = [s for s in out["sessions"] if s[1] == made["id"]]
    assert len(mine) == 1 and mine[0][3] == "local"
    tunnels = [t for t in out["tunnels"] if t[2] == mine[0][0]]
    assert [t[0] for t in tunnels] == [agent.url("web")]
    assert tunnels[0][1] == "https" and tunnels[0][3].startswith("http://127.0.0.1:")
    assert agent.url("web") == f"https://official.burrow.localhost:{server.https_addr.rsplit(':', 1)[1]}"


def test_authtokens_are_never_logged_or_stored(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    """Authtokens pass through Auth, accepted or refused: none reaches the log or the disk."""
    good = credential(server, [])["token"]
    start_agent(server, good, [{"name": "web", "kind": "http", "domain": "quiet.burrow.localhost"}])
    revoked = credential(server, [])
    with server.client() as http:
        assert http.delete(f"/credentials/{revoked['id']}").status_code == 204
    assert "ERR_NGROK_107" in start_agent(server, revoked["token"], []).ready["error"]
    assert public_get(server, "quiet.burrow.localhost").status_code == 200
    stored = b"".join(path.read_bytes() for path in server.data_dir.glob("burrow.db*"))
    for token in (good, revoked["token"]):
        assert token not in server.log()
        assert token.encode() not in stored


def test_narrowing_the_acl_stops_the_tunnels_it_no_longer_allows(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    made = credential(server, ["bind:kept.burrow.localhost", "bind:dropped.burrow.localhost"])
    agent = start_agent(
        server,
        made["token"],
        [
            {"name": "kept", "kind": "http", "domain": "kept.burrow.localhost"},
            {"name": "dropped", "kind": "http", "domain": "dropped.burrow.localhost"},
        ],
    )
    dropped_id = agent.ready["ready"]["dropped"]["id"]
    for host in ("kept.burrow.localhost", "dropped.burrow.localhost"):
        assert public_get(server, host).status_code == 200
    with server.client() as http:
        narrowed_at = time.monotonic()
        patched = http.patch(f"/credentials/{made['id']}", json={"acl": ["bind:kept.burrow.localhost"]})
        assert patched.status_code == 200, patched.text
        stopped = agent.wait_event(lambda e: e.get("event") == "tunnel stopped", timeout=1.0)
        assert stopped == {"event": "tunnel stopped", "id": dropped_id}
        while public_get(server, "dropped.burrow.localhost").status_code != 404:
            assert time.monotonic() - narrowed_at < 1.0, "the tunnel outlived its ACL"
            time.sleep(0.05)
        tunnels = [t["id"] for t in http.get("/tunnels").json()["tunnels"]]
        assert dropped_id not in tunnels and agent.ready["ready"]["kept"]["id"] in tunnels
    # The session carries on with the tunnel its ACL still allows.
    assert public_get(server, "kept.burrow.localhost").json()["host"] == "kept.burrow.localhost"
    assert agent.process.poll() is None
    server.wait_log(lambda entry: entry.get("error") == "ERR_NGROK_316" and dropped_id in json.dumps(entry))


def test_widening_or_rewording_the_acl_stops_nothing(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    made = credential(server, ["bind:*.stays.example", "bind:team=*"])
    agent = start_agent(
        server,
        made["token"],
        [
            {"name": "web", "kind": "http", "domain": "a.stays.example"},
            {"name": "l", "kind": "labeled", "labels": {"team": "stays"}},
        ],
    )
    with server.client() as http:
        for acl in (["*"], ["bind:a.stays.example", "bind:team=stays"]):
            assert http.patch(f"/credentials/{made['id']}", json={"acl": acl}).status_code == 200
        assert agent.wait_event(lambda e: e.get("event") == "tunnel stopped", timeout=1.0) is None
        ids = {t["id"] for t in http.get("/tunnels").json()["tunnels"]}
        assert {agent.ready["ready"]["web"]["id"], agent.ready["ready"]["l"]["id"]} <= ids
        # Then narrowing away the label stops the labeled tunnel alone.
        assert (
            http.patch(f"/credentials/{made['id']}", json={"acl": ["bind:a.stays.example"]}).status_code
            == 200
        )
        stopped = agent.wait_event(lambda e: e.get("event") == "tunnel stopped", timeout=1.0)
        assert stopped == {"event": "tunnel stopped", "id": agent.ready["ready"]["l"]["id"]}
    assert public_get(server, "a.stays.example").status_code == 200


def test_a_refused_local_connection_says_the_agent_could_not_reach_its_service(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the agent's dial is refused
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    token = credential(server, ["bind:*.unreachable.example"])["token"]
    endpoint = {"name": "web", "kind": "http", "domain": "down.unreachable.example"}
    start_agent(server, token, [{**endpoint, "upstream": f"http://127.0.0.1:{closed}"}])
    response = public_get(server, "down.unreachable.example")
    assert response.status_code == 502, response.text
    assert response.headers["ngrok-error-code"] == "ERR_NGROK_8012"
    assert "could not reach its local service" in response.text, response.text


def test_plain_http_to_an_https_only_name_says_it_is_served_over_https(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    token = credential(server, ["bind:*.secure.example"])["token"]
    endpoint = {"name": "web", "kind": "http", "domain": "only.secure.example", "scheme": "https"}
    agent = start_agent(server, token, [endpoint])
    port = server.https_addr.rsplit(":", 1)[1]
    assert agent.url("web") == f"https://only.secure.example:{port}"
    response = public_get(server, "only.secure.example")
    assert response.status_code == 404 and "ERR_NGROK_3200" in response.text
    assert f'served over HTTPS only: <a href="https://only.secure.example:{port}/">' in response.text
    unknown = public_get(server, "nobody.secure.example")  # a name nobody serves: as before
    assert unknown.status_code == 404 and "No agent is serving this name" in unknown.text


def test_an_open_acl_still_cannot_bind_the_server_s_own_names(
    server: BurrowServer, start_agent: Callable[..., Agent]
) -> None:
    """A tenant answering on the dashboard's host (cookies ignore ports) could plant a
    session there: IP addresses, localhost names and --domain itself are never a tunnel's."""
    token = credential(server, [])["token"]  # no rules: any name
    names = ["127.0.0.1", "0.0.0.0", "localhost", "burrow.localhost", "0x7f000001", "127.1"]
    endpoints = [{"name": name, "kind": "http", "domain": name, "scheme": "http"} for name in names]
    endpoints.append({"name": "fine", "kind": "http", "domain": "fine.burrow.localhost", "scheme": "http"})
    agent = start_agent(server, token, endpoints)
    for name in names:
        assert "ERR_NGROK_326" in " ".join(agent.error(name)), (name, agent.error(name))
    assert agent.url("fine").startswith("http://fine.burrow.localhost")
    for host in ("127.0.0.1", f"127.0.0.1:{server.base_url.rsplit(':', 1)[1]}", "localhost"):
        answer = public_get(server, host)
        assert answer.status_code == 404 and "ERR_NGROK_3200" in answer.text, host
