"""The npm agent SDK, @ngrok/ngrok 1.7, on Burrow: Traffic Policy (``.trafficPolicy()``)
carried out end to end, and endpoint pools (``.poolingEnabled(true)``)."""

from __future__ import annotations

import http.server
import json
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge.test_sdk import credential
from tests.harness import BurrowServer, local_http_service

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent.parent
SDK = ROOT / ".venvs" / "ngrok-node-sdk"
AGENT = Path(__file__).parent / "node_agent.mjs"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    server = BurrowServer(tmp_path_factory.mktemp("node-sdk") / "data").start()
    yield server
    server.stop()


def echo_headers(request: http.server.BaseHTTPRequestHandler) -> str:
    return json.dumps({"path": request.path, "headers": {k.lower(): v for k, v in request.headers.items()}})


def start(server: BurrowServer, token: str, forward: str, endpoints: list[dict[str, Any]]) -> Any:
    node = shutil.which("node")
    if node is None or not (SDK / "node_modules" / "@ngrok" / "ngrok").exists():
        pytest.fail("the npm agent SDK is missing: run 'make test' (it builds .venvs/ngrok-node-sdk)")
    config = {
        "token": token,
        "server_addr": server.agent_addr,
        "ca": str(server.ca_path),
        "forward": forward,
        "endpoints": endpoints,
        "sdk": str(SDK),
    }
    process = subprocess.Popen(
        [node, str(AGENT), json.dumps(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        pytest.fail(f"the Node agent printed nothing: {process.stderr.read() if process.stderr else ''}")
    return process, json.loads(line)["ready"]


def stop(process: Any) -> None:
    process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_traffic_policy_through_the_node_sdk(server: BurrowServer) -> None:
    policy = """
on_http_request:
  - expressions: ["req.url.path == '/blocked'"]
    actions: [{type: deny, config: {status_code: 451}}]
  - actions: [{type: add-headers, config: {headers: {x-via: "node-${req.method}"}}}]
on_http_response:
  - actions: [{type: add-headers, config: {headers: {x-policy: "on"}}}]
"""
    token = credential(server, [])["token"]
    with local_http_service(echo_headers) as port:
        endpoints = [{"name": "web", "domain": "node.example", "traffic_policy": policy}]
        process, ready = start(server, token, f"http://127.0.0.1:{port}", endpoints)
        try:
            assert "url" in ready["web"], ready
            url = f"http://{server.http_addr}"
            blocked = httpx.get(f"{url}/blocked", headers={"Host": "node.example"}, timeout=10)
            assert blocked.status_code == 451
            passed = httpx.get(f"{url}/ok", headers={"Host": "node.example"}, timeout=10)
            assert passed.status_code == 200 and passed.headers["x-policy"] == "on"
            assert passed.json()["path"] == "/ok" and passed.json()["headers"]["x-via"] == "node-GET"
        finally:
            stop(process)


def test_two_node_sdk_sessions_pool_one_endpoint(server: BurrowServer) -> None:
    token = credential(server, [])["token"]
    b_key = server.new_account("pool-b@example.com")
    with server.client(b_key) as http_b:
        other_token = http_b.post("/credentials", json={"acl": []}).json()["token"]
    pooled = [{"name": "web", "domain": "pool.example", "pooling": True}]

    def get() -> str:
        answer = httpx.get(f"http://{server.http_addr}/", headers={"Host": "pool.example"}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.text

    with local_http_service(lambda r: "one") as one, local_http_service(lambda r: "two") as two:
        first, ready_first = start(server, token, f"http://127.0.0.1:{one}", pooled)
        second, ready_second = start(server, token, f"http://127.0.0.1:{two}", pooled)
        try:
            assert ready_first["web"]["url"] == ready_second["web"]["url"], (ready_first, ready_second)
            assert {get() for _ in range(10)} == {"one", "two"}  # requests reach both
            intruder, refused = start(server, other_token, f"http://127.0.0.1:{one}", pooled)
            stop(intruder)
            assert "ERR_NGROK_334" in refused["web"]["error"]  # another account's pool: no
            stop(first)
            deadline = time.monotonic() + 10
            while {get() for _ in range(6)} != {"two"}:  # once the session's end is seen
                assert time.monotonic() < deadline, "the pool still sends to the member that left"
                time.sleep(0.1)
        finally:
            stop(second)
            if first.poll() is None:
                stop(first)


def test_jwt_validation_through_the_node_sdk(server: BurrowServer) -> None:
    """jwt-validation with inline keys, bound by ``.trafficPolicy()``: a good token reaches the
    service, a forged one does not (the rules themselves: tests/edge/test_jwt_validation_sdk.py)."""
    from tests.domain.test_jwt_validation import JWKS, OTHER_KEY, token

    config = {
        "issuer": {"allow_list": [{"value": "https://issuer.example/"}]},
        "audience": {"allow_list": [{"value": "urn:burrow:api"}]},
        "http": {
            "tokens": [{"type": "jwt", "method": "header", "name": "Authorization", "prefix": "Bearer "}]
        },
        "jws": {"allowed_algorithms": ["RS256"], "keys": {"sources": {"inline_jwks": JWKS}}},
    }
    policy = json.dumps({"on_http_request": [{"actions": [{"type": "jwt-validation", "config": config}]}]})
    agent_token = credential(server, [])["token"]
    with local_http_service(echo_headers) as port:
        endpoints = [{"name": "web", "domain": "node-jwt.example", "traffic_policy": policy}]
        process, ready = start(server, agent_token, f"http://127.0.0.1:{port}", endpoints)
        try:
            assert "url" in ready["web"], ready

            def get(bearer: str) -> httpx.Response:
                headers = {"Host": "node-jwt.example", "Authorization": f"Bearer {bearer}"}
                return httpx.get(f"http://{server.http_addr}/api", headers=headers, timeout=10)

            passed = get(token())
            assert passed.status_code == 200 and passed.json()["path"] == "/api"
            forged = get(token(OTHER_KEY))
            assert forged.status_code == 401 and forged.headers["ngrok-error-code"] == "ERR_NGROK_3401"
        finally:
            stop(process)
