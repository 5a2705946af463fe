"""The audit trail: every write through the API is recorded, admins read it, nothing secret is in it."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable

import httpx
import pytest
import sqlalchemy
from starlette.testclient import TestClient

from burrow import client
from burrow.api.openapi import openapi_document
from burrow.domain import resources
from tests.api.test_descriptions import disagreements
from tests.edge.conftest import Agent, start_agent  # noqa: F401 - the fixture
from tests.harness import AppServer, BurrowServer
from tests.harness import burrow as burrow_cli


def from_address(server: AppServer, api_key: str, address: str = "10.1.2.3") -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key}", "Ngrok-Version": "2"}
    return TestClient(server.app, server.base_url, headers=headers, client=(address, 40000))


def events(server: AppServer, **params: str) -> list[dict[str, object]]:
    with server.client() as http:
        response = http.get("/audit_events", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["audit_events"])


def test_every_api_write_is_recorded(app_server: AppServer) -> None:
    assert events(app_server) == []  # the account was made through the store, not by a command
    with from_address(app_server, app_server.api_key) as http:
        me = http.get("/api_keys").json()["keys"][0]
        done = []
        created = http.post("/credentials", json={"description": "laptop", "acl": ["bind:a.example"]})
        credential_id = created.json()["id"]
        done.append(("create", "credential", credential_id, created))
        done.append(
            (
                "update",
                "credential",
                credential_id,
                http.patch(f"/credentials/{credential_id}", json={"description": "x"}),
            )
        )
        bot = http.post("/bot_users", json={"name": "ci"})
        done.append(("create", "bot_user", bot.json()["id"], bot))
        done.append(
            (
                "update",
                "bot_user",
                bot.json()["id"],
                http.patch(f"/service_users/{bot.json()['id']}", json={"active": False}),
            )
        )
        key = http.post("/api_keys", json={"description": "k"})
        done.append(("create", "api_key", key.json()["id"], key))
        done.append(("delete", "api_key", key.json()["id"], http.delete(f"/api_keys/{key.json()['id']}")))
        done.append(("delete", "credential", credential_id, http.delete(f"/credentials/{credential_id}")))
        done.append(("delete", "bot_user", bot.json()["id"], http.delete(f"/bot_users/{bot.json()['id']}")))
        # Reads and refused writes are not writes.
        http.get("/credentials")
        assert http.patch(f"/credentials/{credential_id}", json={"description": "gone"}).status_code == 404
        assert http.post("/credentials", json={"acl": ["nonsense"]}).status_code == 400
    recorded = events(app_server)
    assert [(e["operation"], e["resource"], e["resource_id"]) for e in recorded] == [
        (operation, resource, resource_id) for operation, resource, resource_id, _ in reversed(done)
    ]
    for event, (_, _, _, response) in zip(recorded, reversed(done), strict=True):
        assert response.is_success
        assert event["actor_id"] == me["id"]
        assert event["actor_owner_id"] == me["owner_id"]
        assert event["client_ip"] == "10.1.2.3"
        assert event["operation_id"] == response.headers["ngrok-operation-id"]
        assert str(event["created_at"]).endswith("Z")


def test_the_trail_holds_no_secret(app_server: AppServer) -> None:
    with app_server.client() as http:
        made = [
            http.post(
                "/credentials", json={"description": "secret-description", "metadata": "secret-meta"}
            ).json(),
            http.post("/api_keys", json={"description": "secret-description"}).json(),
        ]
        listed = http.get("/audit_events").text
    stored = repr(app_server.snapshot()["audit_events"])
    for text in (listed, stored):
        for item in made:
            assert item["token"] not in text
            assert item["token"].split("_")[-1] not in text
        assert app_server.api_key not in text
        assert "secret-description" not in text and "secret-meta" not in text


def test_members_may_not_read_it(app_server: AppServer) -> None:
    member = app_server.create_user("member@example.com")
    with app_server.client(member) as http:
        http.post("/credentials", json={})
        listed = http.get("/audit_events")
        assert listed.status_code == 403
        assert listed.json()["error_code"] == "ERR_NGROK_635"
    event_id = events(app_server)[0]["id"]
    with app_server.client(member) as http:
        assert http.get(f"/audit_events/{event_id}").status_code == 403


def test_accounts_see_only_their_own(app_server: AppServer) -> None:
    other_admin = app_server.new_account("other@example.com")
    with app_server.client(other_admin) as http:
        http.post("/credentials", json={})
        theirs = http.get("/audit_events").json()["audit_events"]
    assert len(theirs) == 1
    assert events(app_server) == []
    with app_server.client() as http:
        assert http.get(f"/audit_events/{theirs[0]['id']}").status_code == 404


def test_paging_filters_and_get(app_server: AppServer) -> None:
    with app_server.client() as http:
        for n in range(3):
            http.post("/bot_users", json={"name": f"b{n}"})
        http.post("/credentials", json={})
        page = http.get("/audit_events", params={"limit": "2"}).json()
        assert len(page["audit_events"]) == 2 and page["next_page_uri"]
        rest = http.get(page["next_page_uri"]).json()["audit_events"]
        assert len(rest) == 2
        only = http.get("/audit_events", params={"filter": 'obj.resource == "bot_user"'}).json()[
            "audit_events"
        ]
        assert [e["resource"] for e in only] == ["bot_user"] * 3
        one = http.get(f"/audit_events/{rest[0]['id']}").json()
        assert one == rest[0]


def test_it_is_append_only(app_server: AppServer) -> None:
    with app_server.client() as http:
        http.post("/credentials", json={})
        event_id = http.get("/audit_events").json()["audit_events"][0]["id"]
        for method in ("PATCH", "DELETE", "POST", "PUT"):
            path = "/audit_events" if method == "POST" else f"/audit_events/{event_id}"
            assert http.request(method, path, json={} if method != "DELETE" else None).status_code == 405
    # The database itself refuses (a trigger, on SQLite and PostgreSQL alike).
    statements = ["UPDATE audit_events SET actor_id = 'x'", "DELETE FROM audit_events"]
    if app_server.store.dialect() == "postgresql":
        statements.append("TRUNCATE audit_events")  # SQLite has no TRUNCATE (DELETE is it)
    for statement in statements:
        refused = pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only")
        with refused, app_server.store.engine.begin() as connection:
            connection.execute(sqlalchemy.text(statement))
    with app_server.client() as http:
        assert http.get("/audit_events").json()["audit_events"][0]["id"] == event_id


def test_what_a_deleted_bot_user_owned_is_recorded_as_deleted(app_server: AppServer) -> None:
    with app_server.client() as http:
        bot = http.post("/bot_users", json={"name": "ci"}).json()["id"]
        owned = {
            ("api_key", http.post("/api_keys", json={"owner_id": bot}).json()["id"]),
            ("credential", http.post("/credentials", json={"owner_id": bot}).json()["id"]),
            ("credential", http.post("/credentials", json={"owner_id": bot}).json()["id"]),
        }
        kept = http.post("/credentials", json={}).json()["id"]  # the admin's own: stays
        deleted = http.delete(f"/bot_users/{bot}")
        assert deleted.status_code == 204
        events = http.get("/audit_events", params={"limit": "10"}).json()["audit_events"]
        cascade = [e for e in events if e["operation"] == "delete"]
        assert {(e["resource"], e["resource_id"]) for e in cascade} == owned | {("bot_user", bot)}
        assert {e["operation_id"] for e in cascade} == {deleted.headers["ngrok-operation-id"]}
        assert http.get(f"/credentials/{kept}").status_code == 200


def test_description_client_and_schema_agree(app_server: AppServer) -> None:
    with app_server.client() as http:
        http.post("/credentials", json={})
        listed = http.get("/audit_events").json()["audit_events"][0]
        fetched = http.get(f"/audit_events/{listed['id']}").json()
        document = http.get("/openapi.json").json()
    resource = resources.AUDIT_EVENTS
    assert document == openapi_document(resources.ALL)
    for served in (listed, fetched):
        assert disagreements(resource, served, document, resource.filter_fields, client.AuditEvent) == []


@pytest.mark.e2e
def test_cli_and_client_over_a_real_server(make_server: Callable[..., BurrowServer]) -> None:
    """``burrow admin`` writes are recorded too; ``burrow admin audit`` and the client read the trail."""
    server = make_server()
    member = server.create_user("member@example.com")
    with client.Client(server.api_key, base_url=server.base_url) as burrow:
        credential = burrow.credentials.create(description="c")
        burrow.credentials.update(credential.id, description="d")
        listed = list(burrow.audit_events.list())
        assert burrow.audit_events.get(listed[0].id) == listed[0]
    with client.Client(member, base_url=server.base_url) as as_member, pytest.raises(client.Error) as refused:
        as_member.audit_events.list()
    assert refused.value.http_status_code == 403
    local = f"cli:{getpass.getuser()}"
    # The first serve found an account (made by init) so made none; init and users create are recorded.
    assert [(e.operation, e.resource) for e in listed] == [
        ("update", "credential"),
        ("create", "credential"),
        ("create", "api_key"),
        ("create", "user"),
        ("create", "api_key"),
        ("create", "user"),
        ("create", "account"),
    ]
    assert {e.actor_id for e in listed[2:]} == {local}
    assert {e.client_ip for e in listed[2:]} == {"local"}
    assert {e.actor_id for e in listed[:2]} == {listed[0].actor_id} and listed[0].actor_id.startswith("ak_")

    def audit(*args: str) -> list[dict[str, str]]:
        result = burrow_cli("admin", "audit", "--data-dir", str(server.data_dir), "--json", *args)
        return list(json.loads(result.stdout))

    everything = audit()
    assert [e["id"] for e in everything] == [e.id for e in listed]
    assert [e["operation"] for e in audit("--resource", credential.id)] == ["update", "create"]
    assert [e["resource"] for e in audit("--resource", "user")] == ["user", "user"]
    assert len(audit("--actor", local)) == 5
    assert len(audit("--actor", listed[0].actor_owner_id)) == 2
    assert len(audit("--limit", "3")) == 3
    assert audit("--account", "member@example.com") == everything
    table = burrow_cli(
        "admin", "audit", "--data-dir", str(server.data_dir), "--limit", "1", env={"COLUMNS": "400"}
    ).stdout
    assert "update" in table and credential.id in table


@pytest.mark.e2e
def test_stopping_a_tunnel_session_is_recorded(
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],  # noqa: F811
) -> None:
    server = make_server()
    with server.client() as http:
        token = http.post("/credentials", json={}).json()["token"]
        start_agent(server, token, [{"name": "web", "kind": "http", "domain": "audit.example"}]).url("web")
        session = http.get("/tunnel_sessions").json()["tunnel_sessions"][0]
        stopped = http.post(f"/tunnel_sessions/{session['id']}/stop", json={})
        assert stopped.status_code == 204
        latest = http.get("/audit_events").json()["audit_events"][0]
    assert (latest["operation"], latest["resource"], latest["resource_id"]) == (
        "stop",
        "tunnel_session",
        session["id"],
    )
    assert latest["operation_id"] == stopped.headers["ngrok-operation-id"]
    assert latest["client_ip"] == "127.0.0.1"
