"""The resource routes' dispatch (api/router.py) and the cached GET body it serves."""

from __future__ import annotations

import pytest

from burrow.api.router import ResourceRoute, ResourceRouter
from tests.harness import AppServer


def router(app_server: AppServer) -> ResourceRouter:
    resources = app_server.app.app  # type: ignore[attr-defined]
    assert isinstance(resources, ResourceRouter)
    return resources


@pytest.mark.parametrize(
    ("path", "template", "params"),
    [
        ("/credentials", "/credentials", {}),
        ("/credentials/cr_x", "/credentials/{id}", {"id": "cr_x"}),
        ("/tunnel_sessions/ts_x/stop", "/tunnel_sessions/{id}/stop", {"id": "ts_x"}),
        ("/tunnel_sessions/stop", "/tunnel_sessions/{id}", {"id": "stop"}),  # as Starlette's patterns did
    ],
)
def test_a_path_finds_its_route_and_id(
    app_server: AppServer, path: str, template: str, params: dict[str, str]
) -> None:
    found = router(app_server).match(path)
    assert found is not None
    route, path_params = found
    assert isinstance(route, ResourceRoute) and route.path == template and path_params == params


@pytest.mark.parametrize(
    "path",
    ["/credentials/", "/credentials/cr_x/", "/credentials/cr_x/stop", "/credentials/a/b", "/", "/nothing/x"],
)
def test_other_paths_are_left_to_the_starlette_app(app_server: AppServer, path: str) -> None:
    assert router(app_server).match(path) is None
    with app_server.client() as http:
        response = http.get(path)
    assert response.status_code == 404
    assert response.json()["error_code"] == "ERR_NGROK_90404"
    assert response.json()["details"]["path"] == path  # the app's answer for a path it does not serve


def test_a_wrong_method_answers_405_with_what_the_route_allows(app_server: AppServer) -> None:
    with app_server.client() as http:
        on_item = http.put("/credentials/cr_00DfGQMwoxDxSQg0xzPH2R2eoD0", json={})
        on_list = http.delete("/credentials")
    assert on_item.status_code == on_list.status_code == 405
    assert on_item.json()["error_code"] == "ERR_NGROK_90405"
    assert on_item.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert on_list.headers["allow"] == "GET, HEAD, POST"
    assert on_item.headers["ngrok-operation-id"].startswith("op_")


def test_head_is_answered_as_get_without_a_body(app_server: AppServer) -> None:
    with app_server.client() as http:
        created = http.post("/credentials", json={"description": "head"}).json()
        got = http.get(f"/credentials/{created['id']}")
        head = http.head(f"/credentials/{created['id']}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_cached_get_body_follows_writes_and_the_host_it_is_read_through(app_server: AppServer) -> None:
    with app_server.client() as http:
        created = http.post("/credentials", json={"description": "before"}).json()
        path = f"/credentials/{created['id']}"
        assert http.get(path).json()["description"] == "before"
        assert http.get(path).json()["description"] == "before"  # from the cache
        assert http.patch(path, json={"description": "after"}).status_code == 200
        assert http.get(path).json()["description"] == "after"
        elsewhere = http.get(path, headers={"Host": "api.example.net"}).json()
        assert elsewhere["uri"] == f"http://api.example.net{path}"
        assert http.get(path).json()["uri"] == f"http://testserver{path}"
        assert http.delete(path).status_code == 204
        gone = http.get(path)
    assert gone.status_code == 404 and gone.json()["msg"] == "Resource not found."


def test_another_account_never_gets_the_cached_body(make_app_server: object) -> None:
    server = make_app_server()  # type: ignore[operator]
    with server.client() as http:
        created = http.post("/credentials", json={"description": "mine"}).json()
        assert http.get(f"/credentials/{created['id']}").status_code == 200
    _, other_key = server.store.create_account("other@example.com")
    with server.client(other_key) as http:
        response = http.get(f"/credentials/{created['id']}")
    assert response.status_code == 404
