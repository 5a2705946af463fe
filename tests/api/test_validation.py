"""Each class of bad input gets ngrok's status and error code, and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.harness import AppServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    server = AppServer(tmp_path_factory.mktemp("validation") / "data")
    with server.client() as http:
        server.credential_id = http.post("/credentials", json={"description": "existing"}).json()["id"]  # type: ignore[attr-defined]
        server.api_key_id = http.get("/api_keys").json()["keys"][0]["id"]  # type: ignore[attr-defined]
    yield server
    server.close()


def refused(
    server: AppServer, status: int, code: str, send: Callable[[httpx.Client], httpx.Response]
) -> dict[str, Any]:
    before = server.snapshot()
    with server.bare_client() as http:
        response = send(http)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    assert body["status_code"] == status
    assert body["msg"]
    assert body["details"]["operation_id"] == response.headers["ngrok-operation-id"]
    assert server.snapshot() == before
    return body  # type: ignore[no-any-return]


def auth(server: AppServer, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}", "Ngrok-Version": "2", **extra}


JSON = {"Content-Type": "application/json"}


def test_missing_version(server: AppServer) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    refused(server, 400, "ERR_NGROK_218", lambda h: h.post("/credentials", headers=headers, json={}))


def test_unsupported_version(server: AppServer) -> None:
    body = refused(
        server,
        400,
        "ERR_NGROK_217",
        lambda h: h.post("/credentials", headers=auth(server, **{"Ngrok-Version": "1"}), json={}),
    )
    assert "Supported versions: 2" in body["msg"]


@pytest.mark.parametrize(
    ("field", "size", "code"),
    [("description", 256, "ERR_NGROK_604"), ("metadata", 4097, "ERR_NGROK_605")],
)
def test_field_limits_count_bytes(server: AppServer, field: str, size: int, code: str) -> None:
    refused(
        server, 400, code, lambda h: h.post("/credentials", headers=auth(server), json={field: "x" * size})
    )
    # 128 two-byte characters: 128 characters but 256 bytes.
    multibyte = "é" * (size // 2 + 1)
    refused(server, 400, code, lambda h: h.post("/api_keys", headers=auth(server), json={field: multibyte}))
    refused(
        server,
        400,
        code,
        lambda h: h.patch(
            f"/credentials/{server.credential_id}", headers=auth(server), json={field: multibyte}
        ),
    )  # type: ignore[attr-defined]


def test_field_limits_allow_exactly_the_maximum(server: AppServer) -> None:
    with server.client() as http:
        response = http.post("/credentials", json={"description": "é" * 127 + "x", "metadata": "m" * 4096})
        assert response.status_code == 201
        assert http.delete(f"/credentials/{response.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    "body",
    [{"description": 5}, {"metadata": ["a"]}, {"acl": "bind:x.com"}, {"acl": [1]}, {"owner_id": False}],
)
def test_wrong_json_types(server: AppServer, body: dict[str, Any]) -> None:
    refused(server, 400, "ERR_NGROK_215", lambda h: h.post("/credentials", headers=auth(server), json=body))


def test_wrong_type_for_bot_active(server: AppServer) -> None:
    refused(
        server,
        400,
        "ERR_NGROK_215",
        lambda h: h.post("/bot_users", headers=auth(server), json={"name": "b", "active": "yes"}),
    )


def test_unknown_field(server: AppServer) -> None:
    body = refused(
        server,
        400,
        "ERR_NGROK_214",
        lambda h: h.post("/credentials", headers=auth(server), json={"descripton": "typo"}),
    )
    assert "descripton" in body["msg"]


def test_body_not_an_object(server: AppServer) -> None:
    refused(server, 400, "ERR_NGROK_213", lambda h: h.post("/credentials", headers=auth(server), json=["x"]))


@pytest.mark.parametrize("raw", [b"{", b'{"description": "x",}', b"\xff\xfe", b"nul"])
def test_malformed_json(server: AppServer, raw: bytes) -> None:
    refused(
        server,
        400,
        "ERR_NGROK_213",
        lambda h: h.post("/credentials", headers=auth(server, **JSON), content=raw),
    )


def test_missing_content_type(server: AppServer) -> None:
    refused(
        server,
        415,
        "ERR_NGROK_216",
        lambda h: h.post("/credentials", headers=auth(server), content=b'{"description":"x"}'),
    )


def test_wrong_content_type(server: AppServer) -> None:
    refused(
        server,
        415,
        "ERR_NGROK_210",
        lambda h: h.post(
            "/credentials",
            headers=auth(server, **{"Content-Type": "text/plain"}),
            content=b'{"description":"x"}',
        ),
    )


def test_body_too_large(server: AppServer) -> None:
    big = b'{"description":"' + b"x" * (200 * 1024) + b'"}'
    refused(
        server,
        413,
        "ERR_NGROK_90413",
        lambda h: h.post("/credentials", headers=auth(server, **JSON), content=big),
    )


def test_body_too_large_without_content_length(server: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"description":"'
        for _ in range(200):
            yield b"x" * 1024
        yield b'"}'

    refused(
        server,
        413,
        "ERR_NGROK_90413",
        lambda h: h.post("/credentials", headers=auth(server, **JSON), content=chunks()),
    )


def test_body_on_a_bodyless_method(server: AppServer) -> None:
    refused(
        server,
        400,
        "ERR_NGROK_211",
        lambda h: h.request(
            "DELETE", f"/credentials/{server.credential_id}", headers=auth(server, **JSON), content=b"{}"
        ),
    )  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad_id", ["nonsense", "cr_short", "cr_" + "!" * 27, "cr_" + "z" * 27])
def test_malformed_id(server: AppServer, bad_id: str) -> None:
    refused(server, 400, "ERR_NGROK_223", lambda h: h.get(f"/credentials/{bad_id}", headers=auth(server)))
    refused(server, 400, "ERR_NGROK_223", lambda h: h.delete(f"/credentials/{bad_id}", headers=auth(server)))


def test_wrong_id_prefix(server: AppServer) -> None:
    body = refused(
        server,
        400,
        "ERR_NGROK_227",
        lambda h: h.delete(f"/credentials/{server.api_key_id}", headers=auth(server)),
    )  # type: ignore[attr-defined]
    assert "cr_" in body["msg"]
    refused(
        server,
        400,
        "ERR_NGROK_227",
        lambda h: h.get("/credentials", params={"before_id": server.api_key_id}, headers=auth(server)),
    )  # type: ignore[attr-defined]


def test_patch_with_nothing_to_change(server: AppServer) -> None:
    path = f"/credentials/{server.credential_id}"  # type: ignore[attr-defined]
    refused(server, 400, "ERR_NGROK_606", lambda h: h.patch(path, headers=auth(server)))
    refused(server, 400, "ERR_NGROK_606", lambda h: h.patch(path, headers=auth(server), json={}))
    refused(server, 400, "ERR_NGROK_606", lambda h: h.patch(path, headers=auth(server), json={"acl": None}))


def test_owner_cannot_be_reassigned(server: AppServer) -> None:
    refused(
        server,
        400,
        "ERR_NGROK_627",
        lambda h: h.patch(
            f"/credentials/{server.credential_id}", headers=auth(server), json={"owner_id": "usr_x"}
        ),
    )  # type: ignore[attr-defined]
    refused(
        server,
        400,
        "ERR_NGROK_628",
        lambda h: h.patch(f"/api_keys/{server.api_key_id}", headers=auth(server), json={"owner_id": "usr_x"}),
    )  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "rule",
    [
        "",
        "bind:",
        "connect:example.com",
        "bind:*.",
        "bind:a*.example.com",
        "bind:ex ample.com",
        "bind:*.*.example.com",
        "bind:example.com:0",
        "bind:example.com:65536",
        "bind:example.com:-1",
        "bind:-bad.example.com",
        "bind:=value",
        "bind:key=",
        "bind:k=v=w",
        "BIND:example.com",
        " *",
        "bind:" + "a" * 64 + ".com",
        "bind:[::1",
        "bind:*:80",
    ],
)
def test_acl_rules_outside_the_grammar(server: AppServer, rule: str) -> None:
    body = refused(
        server,
        400,
        "ERR_NGROK_600",
        lambda h: h.post("/credentials", headers=auth(server), json={"acl": ["bind:ok.example.com", rule]}),
    )
    assert "bind:" in body["msg"]


def test_unknown_query_parameter(server: AppServer) -> None:
    refused(server, 400, "ERR_NGROK_231", lambda h: h.get("/credentials?page=2", headers=auth(server)))


def test_repeated_query_parameter(server: AppServer) -> None:
    refused(
        server, 400, "ERR_NGROK_232", lambda h: h.get("/credentials?limit=1&limit=2", headers=auth(server))
    )


@pytest.mark.parametrize(
    ("limit", "code"),
    [
        ("0", "ERR_NGROK_233"),
        ("101", "ERR_NGROK_233"),
        ("-1", "ERR_NGROK_233"),
        ("ten", "ERR_NGROK_244"),
        ("1.5", "ERR_NGROK_244"),
    ],
)
def test_limit_out_of_range(server: AppServer, limit: str, code: str) -> None:
    refused(server, 400, code, lambda h: h.get("/credentials", params={"limit": limit}, headers=auth(server)))


def test_not_found_path_and_method(server: AppServer) -> None:
    body = refused(server, 404, "ERR_NGROK_90404", lambda h: h.get("/nope", headers=auth(server)))
    assert body["details"]["path"] == "/nope"
    refused(server, 405, "ERR_NGROK_90405", lambda h: h.put("/credentials", headers=auth(server), json={}))


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "ERR_NGROK_200"),
        ("Basic dXNlcjpwYXNz", "ERR_NGROK_201"),
        ("Bearer", "ERR_NGROK_201"),
        ("Bearer not-a-token", "ERR_NGROK_202"),
    ],
)
def test_authentication_failures(server: AppServer, header: str | None, code: str) -> None:
    headers = {"Ngrok-Version": "2"}
    if header is not None:
        headers["Authorization"] = header
    refused(server, 401, code, lambda h: h.post("/credentials", headers=headers, json={}))


def test_mistyped_token_is_refused_as_malformed(server: AppServer) -> None:
    token = server.api_key
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    refused(
        server,
        401,
        "ERR_NGROK_202",
        lambda h: h.get("/credentials", headers={"Authorization": f"Bearer {flipped}", "Ngrok-Version": "2"}),
    )


def test_authtoken_and_key_id_are_not_api_keys(server: AppServer) -> None:
    with server.client() as http:
        created = http.post("/credentials", json={}).json()
    refused(
        server,
        401,
        "ERR_NGROK_207",
        lambda h: h.get(
            "/credentials", headers={"Authorization": f"Bearer {created['token']}", "Ngrok-Version": "2"}
        ),
    )
    refused(
        server,
        401,
        "ERR_NGROK_208",
        lambda h: h.get(
            "/credentials", headers={"Authorization": f"Bearer {server.api_key_id}", "Ngrok-Version": "2"}
        ),
    )  # type: ignore[attr-defined]
    with server.client() as http:
        assert http.delete(f"/credentials/{created['id']}").status_code == 204


def test_invalid_filter(server: AppServer) -> None:
    body = refused(
        server,
        400,
        "ERR_NGROK_250",
        lambda h: h.get("/credentials", params={"filter": "obj.nope == 1"}, headers=auth(server)),
    )
    assert body["msg"].startswith("Invalid CEL query: ")
