"""One scenario, run by the official ngrok-api client and by burrow.client: same results.

The scenario is written once, against the API surface both share; only the import
differs, which is the promise made to users of ``ngrok.Client``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from tests.harness import OFFICIAL_CLIENT_PYTHON, BurrowServer

pytestmark = pytest.mark.e2e

SCENARIO = textwrap.dedent(
    """
    import json, os
    client = Client(os.environ["API_KEY"], base_url=os.environ["BASE_URL"])
    names = {}
    def name(resource_id):  # ids differ between runs: name them by order of appearance
        return names.setdefault(resource_id, f"id{len(names)}")
    def outcome(call):
        try:
            return {"ok": call()}
        except Exception as error:
            return {"error": [getattr(error, "error_code", None), getattr(error, "http_status_code", None)]}
    def show(item):
        return {"id": name(item.id), "description": item.description, "metadata": item.metadata,
                "acl": list(item.acl), "has_token": bool(item.token), "owner_id": item.owner_id.split("_")[0]}
    steps = []
    made = [client.credentials.create(description=f"c{i}", acl=["bind:*.example.com"]) for i in range(5)]
    steps.append([show(c) for c in made])
    steps.append([name(c.id) for c in client.credentials.list(limit="2")])
    steps.append(show(client.credentials.get(made[0].id)))
    steps.append(show(client.credentials.update(made[1].id, metadata="m", acl=["bind:k=v"])))
    steps.append(outcome(lambda: show(client.credentials.create(description="x" * 256))))
    steps.append(outcome(lambda: show(client.credentials.create(acl=["bad rule"]))))
    steps.append(outcome(lambda: show(client.credentials.update(made[2].id))))
    for c in made:
        client.credentials.delete(c.id)
    steps.append(outcome(lambda: show(client.credentials.get(made[0].id))))
    key = client.api_keys.create(description="k")
    steps.append([key.description, bool(key.token), client.api_keys.get(key.id).token])
    client.api_keys.delete(key.id)
    bot = client.bot_users.create(name="b")
    steps.append([bot.name, bot.active, client.bot_users.update(bot.id, active=False).active])
    client.bot_users.delete(bot.id)
    print(json.dumps(steps))
    """
)


def run(python: str, prelude: str, server: BurrowServer) -> list[Any]:
    result = subprocess.run(
        [python, "-c", prelude + SCENARIO],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "API_KEY": server.api_key, "BASE_URL": server.base_url},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_official_and_burrow_clients_agree(make_server: Callable[..., BurrowServer]) -> None:
    official = run(str(OFFICIAL_CLIENT_PYTHON), "from ngrok import Client\n", make_server())
    ours = run(sys.executable, "from burrow.client import Client\n", make_server())
    assert official == ours
    # And the scenario did what it says.
    assert ours[1] == ["id4", "id3", "id2", "id1", "id0"]
    assert ours[4] == {"error": ["ERR_NGROK_604", 400]} and ours[5] == {"error": ["ERR_NGROK_600", 400]}
    assert ours[6] == {"error": ["ERR_NGROK_606", 400]}
    assert ours[7] == {"error": ["ERR_NGROK_90404", 404]}
    assert ours[8] == ["k", True, None] and ours[9] == ["b", True, False]
