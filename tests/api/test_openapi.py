"""/openapi.json describes exactly what is served, and real responses match it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from burrow.api.app import create_app
from burrow.api.openapi import openapi_document
from burrow.domain import ids, resources
from burrow.store.store import Store
from tests.api.test_ssh_credentials import new_key
from tests.harness import AppServer

METHODS = ("get", "post", "patch", "delete", "put")

from tests.certs import make_certificate  # noqa: E402

_MADE = make_certificate()


def document(server: AppServer) -> dict[str, Any]:
    with server.bare_client() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def schema_validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref, "components": doc["components"]})


def test_document_is_valid_openapi_3_1(app_server: AppServer) -> None:
    doc = document(app_server)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_documented_operation_is_served_and_nothing_else(app_server: AppServer) -> None:
    doc = document(app_server)
    with app_server.client() as http:
        resource_ids = {
            "/credentials/{id}": http.post("/credentials", json={}).json()["id"],
            "/api_keys/{id}": http.post("/api_keys", json={}).json()["id"],
            "/bot_users/{id}": http.post("/bot_users", json={"name": "o"}).json()["id"],
            "/service_users/{id}": http.post("/service_users", json={"name": "o"}).json()["id"],
            "/reserved_domains/{id}": http.post("/reserved_domains", json={"domain": "o"}).json()["id"],
            "/tls_certificates/{id}": http.post("/tls_certificates", json=vars(_MADE)).json()["id"],
            "/ssh_credentials/{id}": http.post("/ssh_credentials", json={"public_key": new_key()}).json()[
                "id"
            ],
            "/reserved_addrs/{id}": http.post("/reserved_addrs", json={}).json()["id"],
            "/tunnel_sessions/{id}": ids.new_id(ids.TUNNEL_SESSION),
            "/tunnel_sessions/{id}/stop": ids.new_id(ids.TUNNEL_SESSION),
            "/endpoints/{id}": ids.new_id(ids.ENDPOINT),
        }
        resource_ids["/audit_events/{id}"] = http.get("/audit_events").json()["audit_events"][0]["id"]
        for path, operations in doc["paths"].items():
            url = path.replace("{id}", resource_ids.get(path, ""))
            for method in METHODS:
                response = http.request(method.upper(), url, json={} if method in ("post", "patch") else None)
                if method in operations:
                    documented = set(operations[method]["responses"])
                    assert str(response.status_code) in documented, (method, path, response.text)
                else:
                    assert response.status_code == 405, (method, path)
        assert http.get("/undocumented").status_code == 404


def test_the_document_lists_every_served_route(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    try:
        app: Any = create_app(store)
        served = {
            (route.path, method.lower())
            for route in [*app.app.routes, *app.app.fallback.routes]
            if isinstance(route, Route)
            for method in route.methods or ()
            if method != "HEAD"
        }
    finally:
        store.close()
    paths = openapi_document(resources.ALL)["paths"]
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    assert served == documented


def test_real_responses_match_their_schemas(app_server: AppServer) -> None:
    doc = document(app_server)
    with app_server.client() as http:
        for path, list_key in (
            ("/credentials", "credentials"),
            ("/api_keys", "keys"),
            ("/bot_users", "bot_users"),
            ("/service_users", "service_users"),
        ):
            operations = doc["paths"][path]
            body = {"name": "schema"} if "users" in path else {"description": "schema"}
            created = http.post(path, json=body)
            schema_validator(
                doc, operations["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
            ).validate(created.json())
            create_body = operations["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            schema_validator(doc, create_body).validate(body)
            listed = http.get(path).json()
            schema_validator(
                doc, operations["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            ).validate(listed)
            assert list_key in listed
        error = http.get("/credentials/cr_bad").json()
        schema_validator(doc, "#/components/schemas/Error").validate(error)
