"""jwt-validation end to end: the real agent SDK (PyPI ``ngrok`` 1.4) binds with the policy,
requests go in with tokens signed here, and the test checks what the client and the agent's
service see. Keys are given inline, or served by a local HTTPS server this test starts (its
CA trusted by the server through SSL_CERT_FILE, its address let in by --jwks-allow-cidrs)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from burrow.edge.certs import ensure_server_certificate, server_context
from tests.domain.test_jwt_validation import AUDIENCE, EC_KEY, ISSUER, JWKS, OTHER_KEY, token
from tests.edge.conftest import Agent
from tests.edge.test_control import go_bind
from tests.edge.test_url_endpoints import agent, answering
from tests.harness import ROOT, BurrowServer

Start = Callable[..., Agent]


class JwksServer:
    """A local HTTPS server serving JWKS at /jwks (counting the fetches)."""

    def __init__(self, directory: Path) -> None:
        certificate = ensure_server_certificate(directory)
        assert certificate.ca_path is not None
        self.ca_path = certificate.ca_path
        self.fetches = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps(JWKS).encode()
                self.send_response(200 if self.path.split("?")[0] == "/jwks" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = server_context(certificate).wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JwksServer]:
    server = JwksServer(tmp_path_factory.mktemp("jwks"))
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, jwks_server: JwksServer) -> Iterator[BurrowServer]:
    data = tmp_path_factory.mktemp("jwt-validation") / "data"
    server = BurrowServer(data, env={"SSL_CERT_FILE": str(jwks_server.ca_path)})
    server.start("--jwks-allow-cidrs", "127.0.0.1/32")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_for_agent(server: BurrowServer) -> str:
    with server.client() as client:
        response = client.post("/credentials", json={"description": "jwt", "acl": []})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def policy(sources: dict[str, Any]) -> dict[str, Any]:
    config = {
        "issuer": {"allow_list": [{"value": ISSUER}]},
        "audience": {"allow_list": [{"value": AUDIENCE}]},
        "http": {
            "tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]
        },
        "jws": {"allowed_algorithms": ["RS256", "ES256"], "keys": {"sources": sources}},
    }
    return {"on_http_request": [{"actions": [{"type": "jwt-validation", "config": config}]}]}


def bind(
    server: BurrowServer, start_agent: Start, agent_token: str, domain: str, document: dict[str, Any]
) -> Agent:
    endpoint = {
        "name": "web",
        "kind": "http",
        "domain": domain,
        "options": [["traffic_policy", json.dumps(document)]],
    }
    return start_agent(server, agent_token, [endpoint])


def get(server: BurrowServer, host: str, bearer: str | None = None) -> httpx.Response:
    headers = {"Host": host} | ({"Authorization": f"Bearer {bearer}"} if bearer is not None else {})
    return httpx.get(f"http://{server.http_addr}/headers", headers=headers, timeout=30)


def test_inline_keys_let_good_tokens_in_and_refuse_the_rest(
    server: BurrowServer, start_agent: Start, token_for_agent: str
) -> None:
    agent = bind(server, start_agent, token_for_agent, "jwt-inline.example", policy({"inline_jwks": JWKS}))
    assert "url" in agent.ready["ready"]["web"], agent.ready
    good = token()
    passed = get(server, "jwt-inline.example", good)
    assert passed.status_code == 200, passed.text
    seen = dict((name.lower(), value) for name, value in passed.json()["headers"])
    assert seen["authorization"] == f"Bearer {good}"  # the service gets the request, token and all
    assert get(server, "jwt-inline.example", token(EC_KEY, "ES256", "ec-1")).status_code == 200
    now = int(time.time())
    none = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}, None, algorithm="none")
    refusals = {
        None: (401, "ERR_NGROK_3401", "no token"),
        token(exp=now - 600): (401, "ERR_NGROK_3401", "expired"),
        token(OTHER_KEY): (401, "ERR_NGROK_3401", "signature does not verify"),
        none: (401, "ERR_NGROK_3401", "'none' is not allowed"),
        token(aud="urn:someone-else"): (403, "ERR_NGROK_3403", "audience"),
        token(iss="https://evil.example/"): (403, "ERR_NGROK_3403", "issuer"),
    }
    for bearer, (status, code, reason) in refusals.items():
        refused = get(server, "jwt-inline.example", bearer)
        assert refused.status_code == status, (bearer, refused.text)
        assert refused.headers["ngrok-error-code"] == code and reason in refused.text, refused.text
        assert "headers" not in refused.text  # the service never saw it
        if status == 401:
            assert refused.headers["www-authenticate"].startswith("Bearer")


def test_keys_fetched_from_a_jwks_url_and_cached(
    server: BurrowServer, start_agent: Start, token_for_agent: str, jwks_server: JwksServer
) -> None:
    """docs/traffic-policy.md's example, its JWKS URL made the local server's."""
    text = (ROOT / "docs" / "traffic-policy.md").read_text()
    example = re.search(r"### jwt-validation\n.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    url = f"https://127.0.0.1:{jwks_server.port}/jwks"
    document = yaml.safe_load(example[1].replace("https://issuer.example/.well-known/jwks.json", url))
    assert document["on_http_request"][0]["actions"][0]["config"]["jws"]["keys"]["sources"] == {
        "additional_jkus": [url]
    }
    bind(server, start_agent, token_for_agent, "jwt-url.example", document)
    before = jwks_server.fetches
    assert get(server, "jwt-url.example", token()).status_code == 200  # the first request waits for the keys
    assert get(server, "jwt-url.example", token()).status_code == 200
    assert get(server, "jwt-url.example", token(OTHER_KEY)).status_code == 401
    assert jwks_server.fetches == before + 1  # fetched once, then cached


def test_the_ssrf_guard_refuses_a_loopback_jwks_url_the_setting_does_not_allow(
    server: BurrowServer, start_agent: Start, token_for_agent: str, jwks_server: JwksServer
) -> None:
    # 127.0.0.2 is loopback too, and outside --jwks-allow-cidrs 127.0.0.1/32.
    url = f"https://127.0.0.2:{jwks_server.port}/jwks"
    bind(server, start_agent, token_for_agent, "jwt-ssrf.example", policy({"additional_jkus": [url]}))
    before = jwks_server.fetches
    refused = get(server, "jwt-ssrf.example", token())
    assert refused.status_code == 503 and refused.headers["ngrok-error-code"] == "ERR_NGROK_90508", (
        refused.text
    )
    assert "headers" not in refused.text and jwks_server.fetches == before  # nothing fetched, nothing through
    assert "not public" in server.log_path.read_text()  # the operator's log says why


def test_a_malformed_jwt_validation_config_refuses_the_bind(
    server: BurrowServer, start_agent: Start, token_for_agent: str
) -> None:
    document = policy({"inline_jwks": JWKS})
    document["on_http_request"][0]["actions"][0]["config"]["jws"]["allowed_algorithms"] = ["none"]
    agent = bind(server, start_agent, token_for_agent, "jwt-bad.example", document)
    error = " ".join(agent.error("web"))
    assert "ERR_NGROK_9026" in error and "jws.allowed_algorithms[0]: none is not allowed" in error, error
    assert get(server, "jwt-bad.example", token()).status_code == 404  # nothing half-bound


def test_a_forward_internal_to_an_endpoint_whose_keys_were_never_fetched_waits_for_them(
    server: BurrowServer, token_for_agent: str, jwks_server: JwksServer
) -> None:
    """The front endpoint's policy does not say which internal endpoint it reaches until it
    runs: the internal endpoint's key set is fetched then, and the request judged with it."""
    url = f"https://127.0.0.1:{jwks_server.port}/jwks?for=internal"  # a URL of its own: not cached yet
    front = go_bind("http", "http://jwt-front.example")
    front["Opts"]["TrafficPolicy"] = json.dumps(
        {
            "on_http_request": [
                {"actions": [{"type": "forward-internal", "config": {"url": "https://jwt.internal"}}]}
            ]
        }
    )
    internal = go_bind("https", "https://jwt.internal", Bindings=["internal"])
    internal["Opts"]["TrafficPolicy"] = json.dumps(policy({"additional_jkus": [url]}))
    with agent(server, token_for_agent, internal) as api, agent(server, token_for_agent, front) as edge:
        api.script, edge.script = answering(b"internal-api"), answering(b"front")
        before = jwks_server.fetches
        passed = get(server, "jwt-front.example", token())
        assert passed.status_code == 200 and passed.text == "internal-api", passed.text
        assert jwks_server.fetches == before + 1
        refused = get(server, "jwt-front.example", token(OTHER_KEY))
        assert refused.status_code == 401 and len(api.requests()) == 1 and edge.requests() == []
