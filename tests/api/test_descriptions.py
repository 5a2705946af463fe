"""Each resource's served JSON, OpenAPI schema, filter fields and client model agree.

The server derives the first three from one description (burrow.domain.resources), and
the client (``burrow.client``, which imports nothing server-side) has its own models, so
these tests are what keeps the four in step. A field added in one place only fails them:
``test_a_field_added_in_one_place_is_caught`` adds one to the description (so to the served
JSON, the schema and the filters, but not the client model), and to each of the four alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from burrow import client
from burrow.api.openapi import openapi_document
from burrow.domain import resources
from burrow.domain.fields import ValueKind
from burrow.domain.models import Credential
from burrow.domain.resources import Resource
from tests.api.test_ssh_credentials import new_key
from tests.certs import make_certificate
from tests.edge.conftest import Agent, start_agent  # noqa: F401 - the fixture, for the live resources
from tests.harness import AppServer, BurrowServer

CLIENT_MODELS: dict[str, type[Any]] = {
    "api_key": client.ApiKey,
    "credential": client.Credential,
    "bot_user": client.BotUser,
    "tunnel_session": client.TunnelSession,
    "tunnel": client.Tunnel,
    "reserved_domain": client.ReservedDomain,
    "reserved_addr": client.ReservedAddr,
    "tls_certificate": client.TlsCertificate,
    "ssh_credential": client.SshCredential,
}
_MADE = make_certificate()
CREATE_BODIES = {
    "credential": {"description": "d", "acl": ["bind:*.example.com"]},
    "api_key": {"description": "d"},
    "bot_user": {"name": "b"},
    "reserved_domain": {"domain": "shape.example.com"},
    "reserved_addr": {"description": "d"},
    "tls_certificate": {"certificate_pem": _MADE.certificate_pem, "private_key_pem": _MADE.private_key_pem},
    "ssh_credential": {"public_key": new_key(), "acl": ["bind:*.example.com"]},
}


def _fits(kind: ValueKind, value: Any) -> bool:
    """Whether a served JSON value is what a filter on a field of ``kind`` reads."""
    if kind in (ValueKind.STRING, ValueKind.TIMESTAMP):
        return isinstance(value, str)
    if kind is ValueKind.BOOLEAN:
        return isinstance(value, bool)
    if kind is ValueKind.STRING_LIST:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return False


def disagreements(
    resource: Resource,
    served: Mapping[str, Any],
    document: Mapping[str, Any],
    filter_fields: Mapping[str, ValueKind],
    client_model: type[Any],
) -> list[str]:
    """Every way the four views of ``resource`` differ; empty when they agree."""
    problems = []
    served_keys = set(served)
    schemas = document["components"]["schemas"]
    name = "".join(part.title() for part in resource.list_key.split("_"))
    schema = schemas[f"{name}Item"]
    documented = set(schema["properties"])
    if served_keys != documented:
        problems.append(f"served {sorted(served_keys ^ documented)} differently from the OpenAPI schema")
    if set(schema["required"]) != documented:
        problems.append("the OpenAPI schema does not require every field")
    errors = Draft202012Validator({**schema, "components": document["components"]}).iter_errors(served)
    problems += [f"the served JSON breaks its schema: {error.message}" for error in errors]
    model_fields = {f.name for f in dataclasses.fields(client_model)} - {"service"}
    if served_keys != model_fields:
        problems.append(
            f"the client model {client_model.__name__} differs in {sorted(served_keys ^ model_fields)}"
        )
    for field_name, kind in filter_fields.items():
        if field_name not in served:
            problems.append(f"filters know {field_name!r}, which is not served")
        elif served[field_name] is not None and not _fits(kind, served[field_name]):
            problems.append(
                f"filters read {field_name!r} as {kind}, but it is served as {served[field_name]!r}"
            )
    try:
        client_model.from_json(served)
    except (KeyError, TypeError, ValueError) as problem:
        problems.append(f"the client model cannot read the served JSON: {problem!r}")
    return problems


def _check(resource: Resource, served: Mapping[str, Any], document: Mapping[str, Any]) -> None:
    assert (
        disagreements(resource, served, document, resource.filter_fields, CLIENT_MODELS[resource.name]) == []
    )


@pytest.mark.parametrize("resource", resources.STORED, ids=lambda r: r.path)
def test_stored_resources_agree(app_server: AppServer, resource: Resource) -> None:
    with app_server.client() as http:
        document = http.get("/openapi.json").json()
        created = http.post(resource.path, json=CREATE_BODIES[resource.name]).json()
        fetched = http.get(f"{resource.path}/{created['id']}").json()
        listed = http.get(resource.path).json()[resource.list_key][0]
        # The filters the API accepts are exactly the description's filter fields.
        accepted = {
            key
            for key in fetched
            if http.get(resource.path, params={"filter": f"obj.{key} == obj.{key}"}).is_success
        }
    assert accepted == set(resource.filter_fields)
    for served in (created, fetched, listed):
        _check(resource, served, document)


@pytest.mark.e2e
def test_live_resources_agree(
    make_server: Callable[..., BurrowServer],
    start_agent: Callable[..., Agent],  # noqa: F811
) -> None:
    """Tunnel sessions and tunnels, as served while a real agent (the ngrok SDK) is connected."""
    server = make_server()
    with server.client() as http:
        token = http.post("/credentials", json={}).json()["token"]
        document = http.get("/openapi.json").json()
        agent = start_agent(server, token, [{"name": "web", "kind": "http", "domain": "shape.example"}])
        agent.url("web")  # it is online
        session = http.get("/tunnel_sessions").json()["tunnel_sessions"][0]
        fetched = http.get(f"/tunnel_sessions/{session['id']}").json()
        tunnel = http.get("/tunnels").json()["tunnels"][0]
        for resource, served in ((resources.TUNNEL_SESSIONS, session), (resources.TUNNELS, tunnel)):
            for key in served:
                response = http.get(resource.path, params={"filter": f"obj.{key} == obj.{key}"})
                assert response.is_success == (key in resource.filter_fields), (resource.path, key)
    for served in (session, fetched):
        _check(resources.TUNNEL_SESSIONS, served, document)
    _check(resources.TUNNELS, tunnel, document)


def test_a_field_added_in_one_place_is_caught() -> None:
    """The test of the test: add ``colour`` to credentials in any one place, and it fails."""
    resource = resources.CREDENTIALS
    when = datetime(2026, 1, 1, tzinfo=UTC)
    item = Credential("cr_x", "acct_x", "usr_x", description="", metadata="", acl=(), created_at=when)
    served = resource.represent(item, "http://h")
    document = openapi_document([resource])
    model = client.Credential

    def problems(**changes: Any) -> list[str]:
        args = {
            "served": served,
            "document": document,
            "filter_fields": resource.filter_fields,
            "client_model": model,
        }
        return disagreements(resource, **{**args, **changes})

    assert problems() == []  # as shipped, they agree

    # In the description: served, documented and filterable, but the client model lacks it.
    extra = resources.constant("colour", ValueKind.STRING, "blue")
    described = dataclasses.replace(resource, fields=(*resource.fields, extra))
    found = disagreements(
        described,
        described.represent(item, "http://h"),
        openapi_document([described]),
        described.filter_fields,
        model,
    )
    assert any("client model" in problem and "colour" in problem for problem in found)

    # In the served JSON only (a hand-written represent()).
    assert any("OpenAPI" in p and "colour" in p for p in problems(served={**served, "colour": "blue"}))
    # In the OpenAPI schema only.
    widened = {**document["components"]["schemas"]["CredentialsItem"]}
    widened["properties"] = {**widened["properties"], "colour": {"type": "string"}}
    widened["required"] = [*widened["required"], "colour"]
    schemas = {**document["components"]["schemas"], "CredentialsItem": widened}
    assert any("OpenAPI" in p for p in problems(document={**document, "components": {"schemas": schemas}}))
    # In the filter table only.
    assert any(
        "colour" in p for p in problems(filter_fields={**resource.filter_fields, "colour": ValueKind.STRING})
    )

    # In the client model only.
    @dataclasses.dataclass(frozen=True)
    class Coloured(client.Credential):
        colour: str = ""

    assert any("colour" in p for p in problems(client_model=Coloured))
