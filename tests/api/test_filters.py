"""?filter= with ngrok's CEL subset, through the API, the official client and ours."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from burrow.client import Client
from tests.api.test_official_client import run_official
from tests.harness import AppServer, BurrowServer


def test_filters_select_and_page(app_server: AppServer) -> None:
    server = app_server
    with server.client() as http:
        made = {}
        for i in range(9):
            acl = ["bind:*.example.com"] if i % 3 == 0 else []
            made[i] = http.post(
                "/credentials", json={"description": f"c{i}", "metadata": str(i % 2), "acl": acl}
            ).json()
        expression = 'obj.metadata == "1" && obj.created_at > timestamp(time.now).subtract("1h")'
        first = http.get("/credentials", params={"filter": expression, "limit": "2"}).json()
        assert [c["description"] for c in first["credentials"]] == ["c7", "c5"]
        assert parse_qs(urlsplit(first["next_page_uri"]).query)["filter"] == [expression]
        rest = http.get(first["next_page_uri"]).json()
        assert [c["description"] for c in rest["credentials"]] == ["c3", "c1"] and rest[
            "next_page_uri"
        ] is None
        no_acl = http.get("/credentials", params={"filter": "obj.acl == null"}).json()["credentials"]
        assert sorted(c["description"] for c in no_acl) == ["c1", "c2", "c4", "c5", "c7", "c8"]
        old = http.get(
            "/credentials", params={"filter": 'obj.created_at < timestamp("2000-01-01T00:00:00Z")'}
        )
        assert old.json()["credentials"] == []
        bots = http.get("/bot_users", params={"filter": "obj.active == true"})
        assert bots.status_code == 200


@pytest.mark.e2e
def test_both_clients_pass_filters(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server()
    with Client(server.api_key, base_url=server.base_url) as client:
        for name in ("alpha", "beta", "gamma"):
            client.credentials.create(description=name)
        ours = [c.description for c in client.credentials.list(filter='obj.description != "beta"')]
    official = run_official(
        server,
        """
        out["names"] = [c.description for c in client.credentials.list(filter='obj.description != "beta"')]
    """,
    )
    assert ours == official["names"] == ["gamma", "alpha"]


def test_filters_past_the_budget_are_refused(app_server: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """What SQL cannot answer is checked in Python within a row budget; past it, 90250."""
    from burrow.api import filtering

    monkeypatch.setattr(filtering, "ROW_BUDGET", 3)
    with app_server.client() as http:
        for i in range(5):
            http.post("/credentials", json={"description": f"c{i}", "acl": ["bind:a.example.com"] * (i % 2)})
        # size() of a list is left to Python: five rows to examine, three allowed.
        refused = http.get("/credentials", params={"filter": "size(obj.acl) == 7"})
        assert refused.status_code == 400 and refused.json()["error_code"] == "ERR_NGROK_90250"
        # SQL narrows the rows first, so the same condition after a compiled one fits.
        narrowed = http.get(
            "/credentials", params={"filter": 'obj.description == "c1" && size(obj.acl) == 1'}
        )
        assert [c["description"] for c in narrowed.json()["credentials"]] == ["c1"]
        # A filter SQL answers entirely examines only what it returns (string ordering is
        # compiled on SQLite only, so the portable case is an `in` list).
        compiled = http.get("/credentials", params={"filter": 'obj.description in ["c1", "c2", "c3", "c4"]'})
        assert len(compiled.json()["credentials"]) == 4
