"""What real clients send that Burrow once refused or mishandled (issue 11, item 7)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import ROOT, AppServer, BurrowServer

NODE_CLIENT = ROOT / ".venvs" / "ngrok-api-node" / "node_modules" / "@ngrok" / "ngrok-api"
NODE_SCRIPT = Path(__file__).parent / "node" / "update_credential.js"


def test_patch_body_may_repeat_the_path_id(app_server: AppServer) -> None:
    with app_server.client() as http:
        created = http.post("/credentials", json={"description": "before"}).json()
        response = http.patch(
            f"/credentials/{created['id']}", json={"id": created["id"], "description": "after"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["description"] == "after"
        assert http.get(f"/credentials/{created['id']}").json()["description"] == "after"


def test_patch_body_with_another_id_is_refused(app_server: AppServer) -> None:
    with app_server.client() as http:
        first = http.post("/credentials", json={"description": "first"}).json()
        second = http.post("/credentials", json={"description": "second"}).json()
        before = app_server.snapshot()
        response = http.patch(f"/credentials/{first['id']}", json={"id": second["id"], "description": "x"})
        assert response.status_code == 400
        body = response.json()
        assert body["error_code"] == "ERR_NGROK_215"
        assert second["id"] in body["msg"] and first["id"] in body["msg"]
        assert app_server.snapshot() == before
        # Only an id is let through: nothing to change is still nothing to change.
        alone = http.patch(f"/credentials/{first['id']}", json={"id": first["id"]})
        assert alone.json()["error_code"] == "ERR_NGROK_606"


def test_trailing_slash_is_not_found_without_redirect(app_server: AppServer) -> None:
    with app_server.client() as http:
        response = http.get("/credentials/", headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    body = response.json()
    assert body["error_code"] == "ERR_NGROK_90404"
    assert body["details"]["path"] == "/credentials/"


def test_two_authorization_headers_are_refused(app_server: AppServer) -> None:
    other = app_server.create_user("member@example.com")
    with app_server.bare_client() as http:
        for tokens in (
            [app_server.api_key, other],
            [app_server.api_key, app_server.api_key],
            ["bad", app_server.api_key],
        ):
            headers = [("Ngrok-Version", "2")] + [("Authorization", f"Bearer {token}") for token in tokens]
            response = http.get("/credentials", headers=headers)
            assert response.status_code == 401, tokens
            assert response.json()["error_code"] == "ERR_NGROK_201"
            assert "2 Authorization headers" in response.json()["msg"]


@pytest.mark.e2e
def test_official_node_client_updates_a_credential(make_server: Callable[..., BurrowServer]) -> None:
    """@ngrok/ngrok-api 0.11 sends the id in its PATCH body (`make test` installs it)."""
    node = shutil.which("node")
    if node is None or not NODE_CLIENT.exists():
        pytest.fail("needs node and @ngrok/ngrok-api under .venvs/ngrok-api-node: run `make test`")
    server = make_server()
    with server.client() as http:
        created = http.post("/credentials", json={"description": "before", "acl": ["bind:a.example"]}).json()
    result = subprocess.run(
        [node, str(NODE_SCRIPT), server.base_url, server.api_key, created["id"], "from node"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"NODE_PATH": str(NODE_CLIENT.parent.parent)},
    )
    assert result.returncode == 0, result.stderr
    updated = json.loads(result.stdout)
    assert updated["id"] == created["id"]
    assert updated["description"] == "from node"
    with server.client() as http:
        stored = http.get(f"/credentials/{created['id']}").json()
    assert stored["description"] == "from node"
    assert stored["acl"] == ["bind:a.example"]
