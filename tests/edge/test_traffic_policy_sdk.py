"""Traffic Policy end to end: the real agent SDK (PyPI ``ngrok`` 1.4, ``.traffic_policy()``)
binds with a policy, then a request goes in and the test checks what the client and the
agent's service see. docs/traffic-policy.md lists what the edge carries out."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from burrow.client import AsyncClient, Client
from tests.edge.conftest import Agent
from tests.harness import BurrowServer

Start = Callable[..., Agent]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("traffic-policy") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(server: BurrowServer) -> str:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "policies", "acl": []})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def with_policy(
    server: BurrowServer, start_agent: Start, token: str, domain: str, policy: dict[str, Any]
) -> Agent:
    endpoint = {
        "name": "web",
        "kind": "http",
        "domain": domain,
        "options": [["traffic_policy", json.dumps(policy)]],
    }
    agent = start_agent(server, token, [endpoint])
    assert "url" in agent.ready["ready"]["web"], agent.ready
    return agent


def get(server: BurrowServer, host: str, path: str = "/", **kwargs: Any) -> httpx.Response:
    headers = {"Host": host, **kwargs.pop("headers", {})}
    return httpx.get(f"http://{server.http_addr}{path}", headers=headers, timeout=30, **kwargs)


def add_headers(headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "add-headers", "config": {"headers": headers}}


def rule(*actions: dict[str, Any], expressions: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"expressions": list(expressions), "actions": list(actions)}


def test_deny_and_custom_response_answer_instead_of_the_service(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    policy = {
        "on_http_request": [
            rule(
                {"type": "deny", "config": {"status_code": 404}},
                expressions=("req.url.path.startsWith('/admin')",),
            ),
            rule(
                {
                    "type": "custom-response",
                    "config": {
                        "status_code": 418,
                        "headers": {"content-type": "text/plain", "x-path": "${req.url.path}"},
                        "body": "${conn.client_ip} may not call ${req.url.path} with ${req.method}",
                    },
                },
                expressions=("req.url.path == '/teapot'", "'x-brew' in req.headers"),
            ),
        ]
    }
    with_policy(server, start_agent, token, "deny.example", policy)
    assert get(server, "deny.example", "/admin/users").status_code == 404
    teapot = get(server, "deny.example", "/teapot", headers={"X-Brew": "1"})
    assert teapot.status_code == 418 and teapot.text == "127.0.0.1 may not call /teapot with GET"
    assert teapot.headers["x-path"] == "/teapot" and teapot.headers["content-type"] == "text/plain"
    # Rules that do not match leave the request to the service.
    passed = get(server, "deny.example", "/teapot")
    assert passed.status_code == 200 and passed.json()["path"] == "/teapot"


def test_redirect_and_url_rewrite(server: BurrowServer, start_agent: Start, token: str) -> None:
    policy = {
        "on_http_request": [
            rule(
                {
                    "type": "redirect",
                    "config": {
                        "from": "^http://([^/]+)/old/(.*)$",
                        "to": "http://$1/new/$2",
                        "status_code": 301,
                    },
                }
            ),
            rule({"type": "url-rewrite", "config": {"from": "/v1/", "to": "/v2/"}}),
        ]
    }
    with_policy(server, start_agent, token, "moves.example", policy)
    moved = get(server, "moves.example", "/old/page?x=1")
    assert moved.status_code == 301 and moved.headers["location"].endswith("/new/page?x=1")
    assert moved.headers["location"].startswith("http://moves.example")
    rewritten = get(server, "moves.example", "/v1/items?id=7")
    assert rewritten.status_code == 200 and rewritten.json()["path"] == "/v2/items?id=7"


def test_headers_both_ways_with_vars(server: BurrowServer, start_agent: Start, token: str) -> None:
    policy = {
        "on_http_request": [
            rule({"type": "set-vars", "config": {"vars": [{"tenant": "${req.headers['x-tenant'][0]}"}]}}),
            rule(
                {
                    "type": "add-headers",
                    "config": {"headers": {"x-tenant-port": "${vars.tenant}:${conn.server_port}"}},
                },
                {"type": "remove-headers", "config": {"headers": ["x-secret"]}},
                expressions=("vars.tenant == 'blue'",),
            ),
            # A value from the query, decoded: a CRLF in it must not reach the head.
            rule(
                {
                    "type": "add-headers",
                    "config": {"headers": {"x-from-query": "${req.query_params['v'][0]}"}},
                }
            ),
        ],
        "on_http_response": [
            rule(
                {"type": "add-headers", "config": {"headers": {"x-status": "${res.status_code}"}}},
                {"type": "remove-headers", "config": {"headers": ["content-type"]}},
            )
        ],
    }
    with_policy(server, start_agent, token, "headers.example", policy)
    port = server.http_addr.rsplit(":", 1)[1]
    blue = get(server, "headers.example", "/headers?v=plain", headers={"X-Tenant": "blue", "X-Secret": "s"})
    seen = {name.lower(): value for name, value in blue.json()["headers"]}
    assert (
        seen["x-tenant-port"] == f"blue:{port}" and "x-secret" not in seen and seen["x-from-query"] == "plain"
    )
    assert blue.headers["x-status"] == "200" and "content-type" not in blue.headers
    green = get(
        server, "headers.example", "/headers?v=a%0d%0aSet-Cookie:%20evil=1", headers={"X-Tenant": "green"}
    )
    seen = {name.lower(): value for name, value in green.json()["headers"]}
    assert "x-tenant-port" not in seen and seen.get("x-secret") is None
    assert "x-from-query" not in seen and "set-cookie" not in seen  # dropped, not split into two
    assert "set-cookie" not in green.headers


def test_restrict_ips_basic_auth_and_close_connection(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    policy = {
        "on_http_request": [
            rule(
                {"type": "restrict-ips", "config": {"deny": ["127.0.0.0/8"]}},
                expressions=("req.url.path.startsWith('/internal')",),
            ),
            rule({"type": "close-connection"}, expressions=("req.url.path == '/hang-up'",)),
            rule({"type": "basic-auth", "config": {"credentials": ["ann:correct-horse-battery"]}}),
        ]
    }
    with_policy(server, start_agent, token, "guarded.example", policy)
    assert (
        get(server, "guarded.example", "/internal/x", auth=("ann", "correct-horse-battery")).status_code
        == 403
    )
    challenged = get(server, "guarded.example", "/x")
    assert challenged.status_code == 401 and challenged.headers["www-authenticate"] == 'Basic realm="ngrok"'
    assert get(server, "guarded.example", "/x", auth=("ann", "wrong-password!")).status_code == 401
    allowed = get(server, "guarded.example", "/x", auth=("ann", "correct-horse-battery"))
    assert allowed.status_code == 200 and allowed.json()["path"] == "/x"
    with pytest.raises(httpx.RemoteProtocolError):
        get(server, "guarded.example", "/hang-up")


def test_the_log_action_writes_its_metadata(server: BurrowServer, start_agent: Start, token: str) -> None:
    policy = {"on_http_request": [rule({"type": "log", "config": {"metadata": {"seen": "${req.url.path}"}}})]}
    with_policy(server, start_agent, token, "logged.example", policy)
    assert get(server, "logged.example", "/noted-path").status_code == 200
    entry = server.wait_log(lambda entry: entry.get("message") == "traffic policy log")
    assert entry["metadata"] == {"seen": "/noted-path"} and entry["phase"] == "on_http_request"


def test_on_tcp_connect_closes_a_refused_client(server: BurrowServer, start_agent: Start, token: str) -> None:
    policy = {"on_tcp_connect": [rule({"type": "restrict-ips", "config": {"deny": ["127.0.0.0/8"]}})]}
    endpoint = {"name": "tcp", "kind": "tcp", "options": [["traffic_policy", json.dumps(policy)]]}
    agent = start_agent(server, token, [endpoint])
    url = agent.url("tcp")
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        try:
            connection.sendall(b"ping")
            received = connection.recv(100)
        except ConnectionResetError:
            received = b""
    assert received == b""  # closed, and nothing echoed by the agent's service
    agent.stop()


def test_the_official_client_lists_endpoints_with_their_policy(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    from tests.api.test_official_client import run_official

    policy = {"on_http_request": [rule({"type": "deny"}, expressions=("req.url.path == '/no'",))]}
    agent = with_policy(server, start_agent, token, "listed.example", policy)
    out = run_official(
        server,
        """
        found = [e for e in client.endpoints.list() if e.public_url.startswith("http://listed.example")]
        out["listed"] = [
            (e.id, e.proto, e.type, e.host, e.port, e.hostport, e.url, e.tunnel.id, e.tunnel_session.id,
             e.traffic_policy, e.bindings, e.pooling_enabled, e.uri)
            for e in found
        ]
        one = client.endpoints.get(found[0].id)
        out["got"] = [one.id, one.public_url, one.upstream_url]
        """,
    )
    [listed] = out["listed"]
    endpoint_id, proto, kind, host, port, hostport, url, tunnel_id, session_id, document = listed[:10]
    http_port = int(server.http_addr.rsplit(":", 1)[1])
    assert endpoint_id.startswith("ep_") and proto == "http" and kind == "agent"
    assert (host, port, hostport) == ("listed.example", http_port, f"listed.example:{http_port}")
    assert url == agent.url("web") and tunnel_id.startswith("tn_") and session_id.startswith("ts_")
    assert json.loads(document) == policy and listed[10:12] == [["public"], False]
    assert listed[12].endswith(f"/endpoints/{endpoint_id}")
    assert out["got"][:2] == [endpoint_id, agent.url("web")] and out["got"][2].startswith("http://127.0.0.1:")
    # Burrow's own client reads the same, sync and async.
    with Client(server.api_key, base_url=server.base_url) as ours:
        endpoint = ours.endpoints.get(endpoint_id)
        assert endpoint.host == "listed.example" and endpoint.port == http_port
        assert json.loads(endpoint.traffic_policy) == policy and endpoint.bindings == ("public",)
        assert endpoint_id in [e.id for e in ours.endpoints.list()]

    async def listed_async() -> list[str]:
        async with AsyncClient(server.api_key, base_url=server.base_url) as client:
            return [e.id async for e in await client.endpoints.list(filter="obj.host == 'listed.example'")]

    assert asyncio.run(listed_async()) == [endpoint_id]
    with server.client() as http:
        missing = http.get("/endpoints/ep_" + "0" * 27)
        assert missing.status_code == 404 and missing.json()["error_code"] == "ERR_NGROK_90404"
        filtered = http.get("/endpoints", params={"filter": "obj.host == 'listed.example'"}).json()
        assert [e["id"] for e in filtered["endpoints"]] == [endpoint_id]


def test_rate_limit_verify_webhook_and_compress_response(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    from tests.edge.test_endpoint_options import github_signature

    policy = {
        "on_http_request": [
            rule(
                {"type": "rate-limit", "config": {"name": "few", "capacity": 2, "rate": "1m"}},
                expressions=("req.url.path.startsWith('/limited')",),
            ),
            rule(
                {"type": "verify-webhook", "config": {"provider": "github", "secret": "gh-secret"}},
                expressions=("req.method == 'POST'",),
            ),
        ],
        "on_http_response": [
            rule({"type": "compress-response"}, expressions=("req.url.path.startsWith('/bytes')",))
        ],
    }
    with_policy(server, start_agent, token, "mixed.example", policy)
    limited = [get(server, "mixed.example", "/limited").status_code for _ in range(3)]
    assert limited == [200, 200, 429]
    assert get(server, "mixed.example", "/other").status_code == 200  # another rule's path
    body = b'{"zen": "Keep it logically awesome."}' * 50
    url, host = f"http://{server.http_addr}/hook", {"Host": "mixed.example"}
    signed = httpx.post(
        url, content=body, headers={**host, "X-Hub-Signature-256": github_signature(b"gh-secret", body)}
    )
    assert signed.status_code == 200 and signed.json()["received"] == len(body)
    forged = httpx.post(
        url, content=body, headers={**host, "X-Hub-Signature-256": github_signature(b"nope", body)}
    )
    assert forged.status_code == 403 and "ERR_NGROK_3204" in forged.text
    expected = (bytes(range(256)) * 4096)[:100_000]
    packed = get(server, "mixed.example", "/bytes/100000", headers={"Accept-Encoding": "gzip"})
    assert packed.headers.get("content-encoding") == "gzip" and packed.content == expected
    plain = get(server, "mixed.example", "/bytes/100000", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == expected
    assert (
        "content-encoding"
        not in get(server, "mixed.example", "/other", headers={"Accept-Encoding": "gzip"}).headers
    )


def test_a_policy_circuit_breaker_opens_after_errors(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    breaker = {"error_threshold": 0.5, "volume_threshold": 3, "tripped_duration": "1m"}
    policy = {"on_http_request": [rule({"type": "circuit-breaker", "config": breaker})]}
    with_policy(server, start_agent, token, "breaker.example", policy)
    assert get(server, "breaker.example", "/ok").status_code == 200  # closed: requests go through
    # 3 answers (the volume), 2 of them errors (over the threshold): the breaker opens.
    assert [get(server, "breaker.example", "/status/502").status_code for _ in range(3)] == [502, 502, 503]
    tripped = get(server, "breaker.example", "/ok")  # not sent to the agent while open
    assert tripped.status_code == 503 and "ERR_NGROK_3202" in tripped.text


def test_a_policy_s_log_lines_are_bounded(server: BurrowServer, start_agent: Start, token: str) -> None:
    fields = {f"k{n}": "${req.headers['x-big'][0]}" for n in range(20)}
    policy = {"on_http_request": [rule({"type": "log", "config": {"metadata": fields}})]}
    with_policy(server, start_agent, token, "loud.example", policy)
    assert get(server, "loud.example", "/", headers={"X-Big": "x" * 5000}).status_code == 200
    entry = server.wait_log(
        lambda entry: entry.get("message") == "traffic policy log" and "loud" in entry.get("endpoint", "")
    )
    assert len(entry["metadata"]) == 16 and all(value == "x" * 256 for value in entry["metadata"].values())


def test_a_policy_s_secrets_are_neither_stored_nor_shown(
    server: BurrowServer, start_agent: Start, token: str
) -> None:
    password, secret = "correct-horse-battery-secret", "whsec-never-shown-anywhere"
    policy = {
        "on_http_request": [
            rule({"type": "basic-auth", "config": {"credentials": [f"ann:{password}"]}}),
            rule({"type": "verify-webhook", "config": {"provider": "github", "secret": secret}}),
        ]
    }
    with_policy(server, start_agent, token, "secret.example", policy)
    assert get(server, "secret.example", "/").status_code == 401  # enforced all the same
    with server.client() as http:
        [shown] = [e for e in http.get("/endpoints").json()["endpoints"] if e["host"] == "secret.example"]
    document = json.loads(shown["traffic_policy"])
    actions = [r["actions"][0]["config"] for r in document["on_http_request"]]
    assert actions[0]["credentials"] == ["ann:<redacted>"] and actions[1]["secret"] == "<redacted>"
    stored = b"".join(path.read_bytes() for path in server.data_dir.glob("burrow.db*"))
    for text in (password, secret):
        assert text.encode() not in stored and text not in server.log()
