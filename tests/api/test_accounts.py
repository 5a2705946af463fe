"""Accounts are isolated; members manage what they own; admins manage everything."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.harness import AppServer


@pytest.fixture
def two_accounts(make_app_server: Callable[..., AppServer]) -> AppServer:
    server = make_app_server(admin_email="alice@one.example")
    server.other_admin = server.new_account("bob@two.example")  # type: ignore[attr-defined]
    return server


def test_accounts_see_nothing_of_each_other(two_accounts: AppServer) -> None:
    server = two_accounts
    with server.client() as one, server.client(server.other_admin) as two:  # type: ignore[attr-defined]
        credential = one.post("/credentials", json={"description": "one's"}).json()
        key = one.post("/api_keys", json={}).json()
        bot = one.post("/bot_users", json={"name": "one-bot"}).json()
        for path in (f"/credentials/{credential['id']}", f"/api_keys/{key['id']}", f"/bot_users/{bot['id']}"):
            assert two.get(path).status_code == 404
            assert (
                two.patch(path, json={"description": "x"} if "bot" not in path else {"name": "x"}).status_code
                == 404
            )
            assert two.delete(path).status_code == 404
            assert one.get(path).status_code == 200
        assert two.get("/credentials").json()["credentials"] == []
        assert {k["id"] for k in two.get("/api_keys").json()["keys"]}.isdisjoint(
            {k["id"] for k in one.get("/api_keys").json()["keys"]}
        )
        assert two.get("/bot_users").json()["bot_users"] == []
        # Naming another account's user or bot as owner finds nobody.
        one_user = credential["owner_id"]
        response = two.post("/credentials", json={"owner_id": one_user})
        assert response.status_code == 400 and response.json()["error_code"] == "ERR_NGROK_634"
        response = two.post("/api_keys", json={"owner_id": bot["id"]})
        assert response.json()["error_code"] == "ERR_NGROK_634"
        # Paging from another account's id yields nothing of the first.
        assert two.get("/credentials", params={"before_id": credential["id"]}).json()["credentials"] == []


def test_members_manage_only_what_they_own(two_accounts: AppServer) -> None:
    server = two_accounts
    member_token = server.create_user("carol@one.example", "member", account="alice@one.example")
    with server.client() as admin, server.client(member_token) as member:
        admins = admin.post("/credentials", json={"description": "admin's"}).json()
        mine = member.post("/credentials", json={"description": "carol's"}).json()
        member_id = mine["owner_id"]
        assert member_id.startswith("usr_") and member_id != admins["owner_id"]
        # Anyone in the account may read.
        assert member.get(f"/credentials/{admins['id']}").status_code == 200
        assert {c["id"] for c in member.get("/credentials").json()["credentials"]} >= {
            admins["id"],
            mine["id"],
        }
        # Members may change only their own.
        for response in (
            member.patch(f"/credentials/{admins['id']}", json={"description": "mine now"}),
            member.delete(f"/credentials/{admins['id']}"),
            member.post("/bot_users", json={"name": "b"}),
        ):
            assert response.status_code == 403 and response.json()["error_code"] == "ERR_NGROK_635"
        assert admin.get(f"/credentials/{admins['id']}").json()["description"] == "admin's"
        assert (
            member.patch(f"/credentials/{mine['id']}", json={"description": "still mine"}).status_code == 200
        )
        # Setting another owner takes an admin.
        for owner in (admins["owner_id"], "alice@one.example"):
            response = member.post("/api_keys", json={"owner_id": owner})
            assert response.status_code == 403 and response.json()["error_code"] == "ERR_NGROK_630"
        assert member.post("/api_keys", json={"owner_id": member_id}).status_code == 201
        # An admin may, by id or email; the response carries the resolved id.
        by_email = admin.post("/credentials", json={"owner_id": "carol@one.example"}).json()
        assert by_email["owner_id"] == member_id
        assert member.delete(f"/credentials/{by_email['id']}").status_code == 204
        assert admin.delete(f"/credentials/{mine['id']}").status_code == 204


def test_owner_must_exist_and_be_active(app_server: AppServer) -> None:
    with app_server.client() as admin:
        bot = admin.post("/bot_users", json={"name": "sleepy", "active": False}).json()
        response = admin.post("/credentials", json={"owner_id": bot["id"]})
        assert response.status_code == 400 and response.json()["error_code"] == "ERR_NGROK_636"
        response = admin.post("/credentials", json={"owner_id": "nobody@example.com"})
        assert response.json()["error_code"] == "ERR_NGROK_634"
        assert admin.delete(f"/bot_users/{bot['id']}").status_code == 204


def test_deleting_a_bot_revokes_its_keys(app_server: AppServer) -> None:
    with app_server.client() as admin:
        bot = admin.post("/bot_users", json={"name": "temp"}).json()
        key = admin.post("/api_keys", json={"owner_id": bot["id"]}).json()
        credential = admin.post("/credentials", json={"owner_id": bot["id"]}).json()
        with app_server.client(key["token"]) as as_bot:
            assert as_bot.get("/credentials").status_code == 200
            assert admin.delete(f"/bot_users/{bot['id']}").status_code == 204
            assert as_bot.get("/credentials").status_code == 401
        assert admin.get(f"/api_keys/{key['id']}").status_code == 404
        assert admin.get(f"/credentials/{credential['id']}").status_code == 404
