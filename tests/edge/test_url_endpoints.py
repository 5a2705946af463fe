"""Endpoints named by URL, as today's Go agent library binds them, on a real server.

A raw muxado agent sends the Bind exactly as ngrok-go 2.1.1 does (agent-protocol.md,
"Current-generation agents"): ``Opts.URL`` names the endpoint, every legacy option is
present and empty. Then traffic for the URL reaches that agent, over each listener.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.edge.malicious_agent import HONEST_ANSWER, PATCH_TUNNEL_STATE, AgentError, MaliciousAgent
from tests.edge.test_control import go_bind
from tests.edge.test_sdk import credential
from tests.harness import BurrowServer


def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def server(make_server: Callable[..., BurrowServer]) -> BurrowServer:
    return make_server()


def agent(server: BurrowServer, token: str, bind: dict[str, Any]) -> MaliciousAgent:
    return MaliciousAgent(server.agent_addr, server.ca_path, token, "", bind=bind)


def test_http_and_https_urls_serve_their_agent(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    http_port = server.http_addr.rsplit(":", 1)[1]
    with agent(server, token, go_bind("http", "http://web.go.example")) as web:
        assert web.url == f"http://web.go.example:{http_port}"
        assert web.bound["Opts"]["URL"] == web.url and web.bound["Error"] == ""
        answer = httpx.get(f"http://{server.http_addr}/hello", headers={"Host": "web.go.example"}, timeout=10)
        assert answer.status_code == 200 and answer.content == HONEST_ANSWER.split(b"\r\n\r\n")[1]
        assert web.requests()[0].startswith(b"GET /hello HTTP/1.1\r\n")
        with agent(server, token, go_bind("https", "https://")) as assigned:
            host = httpx.URL(assigned.url).host
            assert assigned.url.startswith("https://") and host.endswith(".burrow.localhost")
            with httpx.Client(verify=False, timeout=10) as client:  # routing, not trust, is tested
                url = f"https://{server.https_addr}/"
                sent = client.get(url, headers={"Host": host}, extensions={"sni_hostname": host})
            assert sent.status_code == 200
            assert assigned.requests()[0].startswith(b"GET / HTTP/1.1\r\n")


def test_tcp_and_tls_urls_serve_their_agent(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    with agent(server, token, go_bind("tcp", "tcp://")) as tcp:
        host, port = tcp.url.removeprefix("tcp://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET /over-tcp HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 200 OK")
        assert tcp.requests()[0].startswith(b"GET /over-tcp")
    with agent(server, token, go_bind("tls", "tls://secure.go.example")) as tls:
        assert tls.url.startswith("tls://secure.go.example:")
        tls_host, tls_port = server.tls_addr.rsplit(":", 1)
        context = ssl.create_default_context()
        connected = socket.create_connection((tls_host, int(tls_port)), timeout=0.5)
        with connected as raw, contextlib.suppress(OSError):
            context.wrap_socket(raw, server_hostname="secure.go.example")  # no answer: the agent's TLS
        wait_for(lambda: b"secure.go.example" in tls.raw_received())  # the ClientHello, by SNI


def test_a_url_another_tenant_holds_or_the_acl_denies_is_refused(server: BurrowServer) -> None:
    token = credential(server, ["bind:*.mine.example"])["token"]
    other = credential(server, [])["token"]
    taken = pytest.raises(AgentError, match="ERR_NGROK_334")
    with agent(server, token, go_bind("https", "https://app.mine.example")), taken:
        agent(server, other, go_bind("https", "https://app.mine.example")).start()
    with pytest.raises(AgentError, match="ERR_NGROK_316"):
        agent(server, token, go_bind("https", "https://app.theirs.example")).start()
    # A pooled bind does not join an endpoint bound without pooling, even of its account.
    pooled = go_bind("https", "https://app.mine.example", PoolingEnabled=True)
    with agent(server, token, go_bind("https", "https://app.mine.example")), taken:
        agent(server, other, pooled).start()


def test_a_policy_patched_live_applies_to_the_next_request(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    with agent(server, token, go_bind("https", "https://live.go.example")) as live:
        tunnel_id = live.bound["Id"]

        def status(path: str) -> int:
            with httpx.Client(verify=False, timeout=10) as client:
                url = f"https://{server.https_addr}{path}"
                host = "live.go.example"
                return client.get(url, headers={"Host": host}, extensions={"sni_hostname": host}).status_code

        assert status("/admin") == 200
        deny = "on_http_request: [{expressions: [\"req.url.path == '/admin'\"], actions: [{type: deny}]}]"
        patch = {"TunnelId": tunnel_id, "TrafficPolicy": deny, "Metadata": "v2"}
        patched = live.rpc(PATCH_TUNNEL_STATE, patch)
        assert patched == {"Error": ""}
        assert status("/admin") == 403 and status("/other") == 200
        with server.client() as http:
            listed = http.get("/tunnels").json()["tunnels"]
        shown = [t["metadata"] for t in listed if t["public_url"].startswith("https://live.go.example")]
        assert shown == ["v2"]
        # A refused patch changes nothing: the deny stays.
        refused = live.rpc(PATCH_TUNNEL_STATE, {"TunnelId": tunnel_id, "TrafficPolicy": "on_http_request: ["})
        assert "ERR_NGROK_2236" in refused["Error"] and status("/admin") == 403
        unknown = live.rpc(PATCH_TUNNEL_STATE, {"TunnelId": "tn_nope", "Metadata": "x"})
        assert "ERR_NGROK_301" in unknown["Error"]
        cleared = live.rpc(PATCH_TUNNEL_STATE, {"TunnelId": tunnel_id, "TrafficPolicy": ""})
        assert cleared == {"Error": ""} and status("/admin") == 200


def answering(body: bytes) -> Callable[[bytes], bytes]:
    return lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def test_internal_endpoints_are_reached_only_by_their_account_s_forward_internal(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server()
    a_token = credential(server, [])["token"]
    b_key = server.new_account("b@example.com")
    with server.client(b_key) as http_b:
        b_token = http_b.post("/credentials", json={"acl": []}).json()["token"]
    forward = (
        "on_http_request: [{actions: [{type: forward-internal, config: {url: 'https://api.internal'}}]}]"
    )
    front = go_bind("http", "http://front.example")
    front["Opts"]["TrafficPolicy"] = forward
    theirs = go_bind("http", "http://theirs.example")
    theirs["Opts"]["TrafficPolicy"] = forward
    internal = go_bind("https", "https://api.internal", Bindings=["internal"])

    def get(host: str) -> httpx.Response:
        return httpx.get(f"http://{server.http_addr}/x", headers={"Host": host}, timeout=10)

    with agent(server, a_token, internal) as api, agent(server, a_token, front) as edge:
        api.script, edge.script = answering(b"internal-api"), answering(b"front")
        assert api.url == "https://api.internal" and api.bound["Error"] == ""
        reached = get("front.example")
        assert reached.status_code == 200 and reached.text == "internal-api"
        assert edge.requests() == [] and api.requests()[0].startswith(b"GET /x HTTP/1.1")
        # No public listener serves it, by either scheme.
        assert get("api.internal").status_code == 404
        try:
            with httpx.Client(verify=False, timeout=10) as client:
                sni = {"sni_hostname": "api.internal"}
                status = client.get(f"https://{server.https_addr}/x", extensions=sni).status_code
        except httpx.ConnectError:
            status = 0  # the HTTPS listener has no certificate for it: the handshake is refused
        assert status in (0, 404) and len(api.requests()) == 1
        # Another account's policy naming the same URL does not reach it ...
        with agent(server, b_token, theirs) as other:
            other.script = answering(b"theirs")
            refused = get("theirs.example")
            assert refused.status_code == 404 and "api.internal" in refused.text
            assert len(api.requests()) == 1 and other.requests() == []
            # ... and that account's own internal endpoint of that name is another one.
            with agent(
                server, b_token, go_bind("https", "https://api.internal", Bindings=["internal"])
            ) as own:
                own.script = answering(b"b-internal")
                assert get("theirs.example").text == "b-internal"
                assert get("front.example").text == "internal-api"
    # Once the internal endpoint is gone, forward-internal answers 404 (on_error: halt).
    with agent(server, a_token, front) as edge:
        assert get("front.example").status_code == 404 and edge.requests() == []


def test_after_a_forward_internal_the_internal_endpoint_s_response_phase_runs_and_the_checks_made_stay(
    server: BurrowServer,
) -> None:
    """ngrok: the endpoint forwarded to "behaves as if the traffic was sent directly to it" and
    the client gets its upstream's response: so its on_http_response runs, the forwarding
    endpoint's does not. What the forwarding endpoint decided before the forward stays: its
    header edits reach the internal endpoint, and its verify-webhook is still checked (the
    body, once whole) rather than dropped with its plan."""
    token = credential(server, [])["token"]
    front = go_bind("http", "http://checked.example")
    front["Opts"]["TrafficPolicy"] = json.dumps(
        {
            "on_http_request": [
                {
                    "actions": [
                        {"type": "verify-webhook", "config": {"provider": "github", "secret": "gh-secret"}},
                        {"type": "add-headers", "config": {"headers": {"x-from-front": "yes"}}},
                        {"type": "forward-internal", "config": {"url": "https://checked.internal"}},
                    ]
                }
            ],
            "on_http_response": [
                {"actions": [{"type": "add-headers", "config": {"headers": {"x-front-response": "yes"}}}]}
            ],
        }
    )
    internal = go_bind("https", "https://checked.internal", Bindings=["internal"])
    internal["Opts"]["TrafficPolicy"] = json.dumps(
        {
            "on_http_response": [
                {"actions": [{"type": "add-headers", "config": {"headers": {"x-internal-response": "yes"}}}]}
            ]
        }
    )
    body = b'{"action": "opened"}'
    signature = "sha256=" + hmac.new(b"gh-secret", body, hashlib.sha256).hexdigest()

    def post(headers: dict[str, str]) -> httpx.Response:
        headers = {"Host": "checked.example", **headers}
        return httpx.post(f"http://{server.http_addr}/hook", headers=headers, content=body, timeout=10)

    with agent(server, token, internal) as api, agent(server, token, front) as edge:
        api.script, edge.script = answering(b"internal-api"), answering(b"front")
        signed = post({"X-Hub-Signature-256": signature})
        assert signed.status_code == 200 and signed.text == "internal-api", signed.text
        assert signed.headers.get("x-internal-response") == "yes"
        assert "x-front-response" not in signed.headers
        (forwarded,) = api.requests()
        assert b"\r\nx-from-front: yes\r\n" in forwarded and edge.requests() == []
        for headers in ({}, {"X-Hub-Signature-256": "sha256=" + "0" * 64}):
            refused = post(headers)
            assert refused.status_code == 403 and refused.headers["ngrok-error-code"] == "ERR_NGROK_3204"
        assert len(api.requests()) == 1 and edge.requests() == []
