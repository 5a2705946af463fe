"""The official ngrok-api Python client 0.19.0, unmodified, against a real ``burrow serve``.

The client runs in its own environment (.venvs/ngrok-api, made by ``make``) because its
import package, ``ngrok``, clashes with the ngrok agent SDK's. Each scenario is a script
run with that interpreter; it prints one JSON document the test then checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import OFFICIAL_CLIENT_PYTHON, BurrowServer

pytestmark = pytest.mark.e2e

PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    import ngrok
    client = ngrok.Client(os.environ["API_KEY"], base_url=os.environ["BASE_URL"])
    out = {}
    def error(call):
        try:
            call()
        except ngrok.NotFoundError as e:
            return {"type": "NotFoundError", "status": e.http_status_code, "code": e.error_code,
                    "operation_id": e.operation_id}
        except ngrok.Error as e:
            return {"type": "Error", "status": e.http_status_code, "code": e.error_code,
                    "operation_id": e.operation_id}
        return None
    """
)


def run_official(server: BurrowServer, script: str, api_key: str | None = None) -> dict[str, Any]:
    if not OFFICIAL_CLIENT_PYTHON.exists():
        pytest.fail(
            "the official client's environment is missing: run 'make test' (it builds .venvs/ngrok-api)"
        )
    result = subprocess.run(
        [str(OFFICIAL_CLIENT_PYTHON), "-c", PRELUDE + textwrap.dedent(script) + "\nprint(json.dumps(out))"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "API_KEY": api_key or server.api_key, "BASE_URL": server.base_url},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_official_client_is_the_pinned_version() -> None:
    version = subprocess.run(
        [str(OFFICIAL_CLIENT_PYTHON), "-m", "pip", "show", "ngrok-api"], capture_output=True, text=True
    ).stdout
    assert "Version: 0.19.0" in version


def test_api_keys_lifecycle(burrow_server: BurrowServer) -> None:
    out = run_official(
        burrow_server,
        """
        key = client.api_keys.create(description="ci key", metadata='{"team":"a"}')
        out["created"] = key._props
        out["got"] = client.api_keys.get(key.id)._props
        out["updated"] = client.api_keys.update(key.id, description="renamed")._props
        out["listed"] = [k.id for k in client.api_keys.list()]
        # Authenticate with the key just made, then delete it and be refused.
        fresh = ngrok.Client(key.token, base_url=os.environ["BASE_URL"])
        out["fresh_sees"] = [k.id for k in fresh.api_keys.list()]
        client.api_keys.delete(key.id)
        out["after_delete_get"] = error(lambda: client.api_keys.get(key.id))
        out["after_delete_auth"] = error(lambda: fresh.api_keys.list())
    """,
    )
    created = out["created"]
    assert set(created) == {"id", "uri", "description", "metadata", "created_at", "token", "owner_id"}
    assert created["id"].startswith("ak_") and len(created["id"]) == 30
    assert created["token"].startswith(created["id"][3:] + "_")
    assert created["uri"] == f"{burrow_server.base_url}/api_keys/{created['id']}"
    assert created["description"] == "ci key" and created["metadata"] == '{"team":"a"}'
    assert created["created_at"].endswith("Z") and created["owner_id"].startswith("usr_")
    assert out["got"] == {**created, "token": None}
    assert out["updated"] == {**created, "token": None, "description": "renamed"}
    assert created["id"] in out["listed"] and created["id"] in out["fresh_sees"]
    assert out["after_delete_get"]["type"] == "NotFoundError"
    assert out["after_delete_get"]["status"] == 404
    assert out["after_delete_auth"] == {
        "type": "Error",
        "status": 401,
        "code": "ERR_NGROK_203",
        "operation_id": out["after_delete_auth"]["operation_id"],
    }


def test_credentials_lifecycle_and_validation(burrow_server: BurrowServer) -> None:
    out = run_official(
        burrow_server,
        """
        rules = ["bind:*.example.com", "bind:tcp.example.com:20002"]
        cred = client.credentials.create(description="device 1", acl=rules)
        out["created"] = cred._props
        out["got"] = client.credentials.get(cred.id)._props
        out["updated"] = client.credentials.update(cred.id, metadata="m", acl=["bind:k=v"])._props
        out["empty_update"] = error(lambda: client.credentials.update(cred.id))
        out["long_description"] = error(lambda: client.credentials.create(description="x" * 256))
        out["bad_acl"] = error(lambda: client.credentials.create(acl=["bind:"]))
        out["bad_acl_update"] = error(lambda: client.credentials.update(cred.id, acl=["connect:x"]))
        client.credentials.delete(cred.id)
        out["deleted"] = error(lambda: client.credentials.get(cred.id))
        out["deleted_again"] = error(lambda: client.credentials.delete(cred.id))
    """,
    )
    created = out["created"]
    assert set(created) == {"id", "uri", "created_at", "description", "metadata", "token", "acl", "owner_id"}
    assert created["id"].startswith("cr_") and created["token"]
    assert created["acl"] == ["bind:*.example.com", "bind:tcp.example.com:20002"]
    assert created["metadata"] == ""
    assert out["got"] == {**created, "token": None}
    assert out["updated"]["acl"] == ["bind:k=v"] and out["updated"]["metadata"] == "m"
    assert out["updated"]["description"] == "device 1" and out["updated"]["token"] is None
    assert out["empty_update"]["status"] == 400 and out["empty_update"]["code"] == "ERR_NGROK_606"
    assert out["long_description"]["status"] == 400
    assert out["long_description"]["code"] == "ERR_NGROK_604"
    assert out["bad_acl"]["status"] == 400 and out["bad_acl"]["code"] == "ERR_NGROK_600"
    assert out["bad_acl_update"]["code"] == "ERR_NGROK_600"
    assert out["deleted"]["type"] == "NotFoundError" and out["deleted"]["operation_id"].startswith("op_")
    assert out["deleted_again"]["type"] == "NotFoundError"


@pytest.mark.parametrize("service", ["bot_users", "service_users"])
def test_bot_users_lifecycle(burrow_server: BurrowServer, service: str) -> None:
    out = run_official(
        burrow_server,
        f"""
        users = client.{service}
        bot = users.create(name="ci-bot")
        out["created"] = bot._props
        out["got"] = users.get(bot.id)._props
        out["updated"] = users.update(bot.id, name="ci-bot-2")._props
        out["listed"] = [b.id for b in users.list()]
        users.delete(bot.id)
        out["deleted"] = error(lambda: users.get(bot.id))
    """,
    )
    created = out["created"]
    assert set(created) == {"id", "uri", "name", "active", "created_at"}
    assert created["id"].startswith("bot_") and created["active"] is True
    assert created["uri"] == f"{burrow_server.base_url}/{service}/{created['id']}"
    assert out["got"] == created
    assert out["updated"] == {**created, "name": "ci-bot-2"}
    assert created["id"] in out["listed"]
    assert out["deleted"]["type"] == "NotFoundError"


def test_paging_250_credentials_with_limit_7(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server()
    with server.client() as http:
        made = [http.post("/credentials", json={"description": f"c{i}"}).json()["id"] for i in range(250)]
    out = run_official(
        server,
        """
        out["ids"] = [c.id for c in client.credentials.list(limit="7")]
    """,
    )
    assert len(out["ids"]) == 250
    assert len(set(out["ids"])) == 250
    assert out["ids"] == list(reversed(made))  # newest first, each exactly once


def test_deactivated_bot_owner_is_refused(burrow_server: BurrowServer) -> None:
    out = run_official(
        burrow_server,
        """
        bot = client.bot_users.create(name="deploy-bot")
        key = client.api_keys.create(description="bot key", owner_id=bot.id)
        out["owner"] = key.owner_id
        as_bot = ngrok.Client(key.token, base_url=os.environ["BASE_URL"])
        out["before"] = len([c.id for c in as_bot.credentials.list()]) >= 0
        cred = as_bot.credentials.create(description="made by bot")
        out["cred_owner"] = cred.owner_id
        client.bot_users.update(bot.id, active=False)
        out["after"] = error(lambda: as_bot.credentials.list())
        client.bot_users.update(bot.id, active=True)
        out["reactivated"] = error(lambda: as_bot.credentials.list())
        out["bot_id"] = bot.id
    """,
    )
    assert out["owner"] == out["bot_id"] == out["cred_owner"]
    assert out["before"] is True
    assert out["after"]["status"] == 401 and out["after"]["code"] == "ERR_NGROK_203"
    assert out["reactivated"] is None


def test_tunnel_listings_parse_when_nothing_is_live(burrow_server: BurrowServer) -> None:
    out = run_official(
        burrow_server,
        """
        out["sessions"] = [s.id for s in client.tunnel_sessions.list()]
        out["tunnels"] = [t.id for t in client.tunnels.list()]
        out["missing"] = error(lambda: client.tunnel_sessions.get("ts_" + "0" * 27))
    """,
    )
    assert out["sessions"] == [] and out["tunnels"] == []
    assert out["missing"]["type"] == "NotFoundError"
