"""Paging: newest first, next_page_uri carries the query, and an id cursor that holds."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from tests.harness import AppServer


def test_next_page_uri_is_absolute_and_carries_every_parameter(
    make_app_server: Callable[..., AppServer],
) -> None:
    server = make_app_server()
    with server.client() as http:
        for i in range(5):
            http.post("/credentials", json={"description": f"c{i}"})
        first = http.get("/credentials", params={"limit": "2"}).json()
        assert first["uri"] == f"{server.base_url}/credentials"
        next_uri = first["next_page_uri"]
        assert next_uri.startswith(f"{server.base_url}/credentials?")
        query = parse_qs(urlsplit(next_uri).query)
        assert query == {"limit": ["2"], "before_id": [first["credentials"][-1]["id"]]}
        seen = [c["id"] for c in first["credentials"]]
        while next_uri:
            page = http.get(next_uri).json()
            seen += [c["id"] for c in page["credentials"]]
            next_uri = page["next_page_uri"]
        assert len(seen) == 5 == len(set(seen)) and seen == sorted(seen, reverse=True)
        exact = http.get("/credentials", params={"limit": "5"}).json()
        assert exact["next_page_uri"] is None and len(exact["credentials"]) == 5
        empty = http.get("/credentials", params={"before_id": seen[-1]}).json()
        assert empty == {"credentials": [], "uri": f"{server.base_url}/credentials", "next_page_uri": None}
        default = http.get("/credentials").json()
        assert len(default["credentials"]) == 5


def test_uri_follows_the_host_the_client_used(app_server: AppServer) -> None:
    with app_server.client() as http:
        response = http.get("/credentials", headers={"Host": "api.burrow.example:8443"})
    assert response.json()["uri"] == "http://api.burrow.example:8443/credentials"


def test_cursor_neither_skips_nor_repeats_under_concurrent_changes(
    make_app_server: Callable[..., AppServer],
) -> None:
    server = make_app_server()
    with server.client() as http:
        original = [http.post("/credentials", json={"description": f"c{i}"}).json()["id"] for i in range(30)]
        page = http.get("/credentials", params={"limit": "7"}).json()
        seen = [c["id"] for c in page["credentials"]]
        deleted = set()
        while page["next_page_uri"]:
            # Between pages: new items arrive (newer than the cursor) and seen and unseen
            # items are deleted.
            http.post("/credentials", json={"description": "new"})
            victim_seen = seen[len(seen) // 2]
            unseen = [i for i in original if i not in seen and i not in deleted]
            for victim in (victim_seen, unseen[-1] if unseen else None):
                if victim and victim not in deleted:
                    assert http.delete(f"/credentials/{victim}").status_code == 204
                    deleted.add(victim)
            page = http.get(page["next_page_uri"]).json()
            seen += [c["id"] for c in page["credentials"]]
    assert len(seen) == len(set(seen))  # nothing repeated
    expected = [i for i in reversed(original) if i in seen or i not in deleted]
    assert seen == expected  # nothing skipped that still existed when its page was read


def test_max_page_is_100(make_app_server: Callable[..., AppServer]) -> None:
    server = make_app_server()
    with server.client() as http:
        for _ in range(101):
            http.post("/bot_users", json={"name": "b"})
        page = http.get("/bot_users").json()
        assert len(page["bot_users"]) == 100 and page["next_page_uri"]
        assert len(http.get(page["next_page_uri"]).json()["bot_users"]) == 1
