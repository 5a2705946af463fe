"""The OpenAPI 3.1 document, generated from the same specs that drive the handlers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from burrow import __version__
from burrow.domain import fields

_KIND_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "string_list": {"type": "array", "items": {"type": "string"}},
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error_code", "status_code", "msg", "details"],
    "properties": {
        "error_code": {"type": "string", "pattern": "^ERR_NGROK_[0-9]+$"},
        "status_code": {"type": "integer"},
        "msg": {"type": "string"},
        "details": {
            "type": "object",
            "required": ["operation_id"],
            "properties": {"operation_id": {"type": "string"}},
            "additionalProperties": True,
        },
    },
}


def _field_schema(field: fields.Field) -> dict[str, Any]:
    schema = dict(_KIND_SCHEMAS[field.kind], description=field.doc)
    if field.max_bytes is not None:
        # JSON Schema counts characters; the byte limit is stricter and is in the text.
        schema["maxLength"] = field.max_bytes
    return {"oneOf": [schema, {"type": "null"}]}


def _body_schema(accepted: tuple[fields.Field, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field.name: _field_schema(field) for field in accepted},
        "additionalProperties": False,
    }


def _resource_schema(spec: Any) -> dict[str, Any]:
    string = {"type": "string"}
    if spec.kind.name == "bot_user":
        properties: dict[str, Any] = {
            "id": string,
            "uri": {"type": "string", "format": "uri"},
            "name": string,
            "active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
        }
    else:
        properties = {
            "id": string,
            "uri": {"type": "string", "format": "uri"},
            "created_at": {"type": "string", "format": "date-time"},
            "description": string,
            "metadata": string,
            "token": {"type": ["string", "null"], "description": "only in the create response"},
            "owner_id": string,
        }
        if spec.kind.name == "credential":
            properties["acl"] = {"type": "array", "items": string}
    return {"type": "object", "required": list(properties), "properties": properties}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": "an ngrok-style error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _add_tunnel_paths(
    paths: dict[str, Any], schemas: dict[str, Any], version_header: Any, id_parameter: Any
) -> None:
    string = {"type": "string"}
    ref = {
        "type": "object",
        "required": ["id", "uri"],
        "properties": {"id": string, "uri": {"type": "string", "format": "uri"}},
    }
    session_properties: dict[str, Any] = {
        "id": string,
        "uri": {"type": "string", "format": "uri"},
        "agent_version": string,
        "credential": ref,
        "ip": string,
        "metadata": string,
        "os": string,
        "region": string,
        "started_at": {"type": "string", "format": "date-time"},
        "transport": string,
    }
    tunnel_properties: dict[str, Any] = {
        "id": string,
        "public_url": string,
        "started_at": {"type": "string", "format": "date-time"},
        "metadata": string,
        "proto": string,
        "region": string,
        "tunnel_session": ref,
        "endpoint": {"oneOf": [ref, {"type": "null"}]},
        "labels": {"type": "object", "additionalProperties": string},
        "backends": {"type": "array", "items": ref},
        "forwards_to": string,
    }
    for name, properties, list_key in (
        ("TunnelSession", session_properties, "tunnel_sessions"),
        ("Tunnel", tunnel_properties, "tunnels"),
    ):
        schemas[name] = {"type": "object", "required": list(properties), "properties": properties}
        schemas[f"{name}List"] = {
            "type": "object",
            "required": [list_key, "uri", "next_page_uri"],
            "properties": {
                list_key: {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "uri": {"type": "string", "format": "uri"},
                "next_page_uri": {"type": ["string", "null"], "format": "uri"},
            },
        }
    list_parameters = [
        version_header,
        {"name": "before_id", "in": "query", "schema": string},
        {"name": "limit", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
        {"name": "filter", "in": "query", "schema": string},
    ]
    errors = (400, 401, 404, 405, 413, 415)
    paths["/tunnel_sessions"] = {
        "get": {
            "operationId": "list_tunnel_sessions",
            "tags": ["tunnel session"],
            "summary": "List the account's live agent sessions, newest first",
            "parameters": list_parameters,
            "responses": {"200": _json("TunnelSessionList", "a page"), **_errors(*errors)},
        }
    }
    paths["/tunnel_sessions/{id}"] = {
        "get": {
            "operationId": "get_tunnel_sessions",
            "tags": ["tunnel session"],
            "summary": "Get a live agent session",
            "parameters": [version_header, id_parameter],
            "responses": {"200": _json("TunnelSession", "found"), **_errors(*errors)},
        }
    }
    paths["/tunnel_sessions/{id}/stop"] = {
        "post": {
            "operationId": "stop_tunnel_sessions",
            "tags": ["tunnel session"],
            "summary": "Tell the agent to stop, and end its session",
            "parameters": [version_header, id_parameter],
            "responses": {"204": {"description": "stopped"}, **_errors(*errors, 403)},
        }
    }
    paths["/tunnels"] = {
        "get": {
            "operationId": "list_tunnels",
            "tags": ["tunnel"],
            "summary": "List the account's live tunnels, newest first",
            "parameters": list_parameters,
            "responses": {"200": _json("TunnelList", "a page"), **_errors(*errors)},
        }
    }


def openapi_document(specs: Iterable[Any]) -> dict[str, Any]:
    version_header = {"$ref": "#/components/parameters/NgrokVersion"}
    id_parameter = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    common_errors = (400, 401, 404, 405, 413, 415)
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for spec in specs:
        name = "".join(part.title() for part in spec.list_key.split("_"))
        item_ref, list_ref = f"{name}Item", f"{name}List"
        schemas[item_ref] = _resource_schema(spec)
        schemas[list_ref] = {
            "type": "object",
            "required": [spec.list_key, "uri", "next_page_uri"],
            "properties": {
                spec.list_key: {"type": "array", "items": {"$ref": f"#/components/schemas/{item_ref}"}},
                "uri": {"type": "string", "format": "uri"},
                "next_page_uri": {"type": ["string", "null"], "format": "uri"},
            },
        }
        schemas[f"{name}Create"] = _body_schema(spec.create_fields)
        schemas[f"{name}Update"] = _body_schema(spec.update_fields)
        create_body = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}Create"}}},
        }
        update_body = {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}Update"}}},
        }
        tag = spec.title
        paths[spec.path] = {
            "get": {
                "operationId": f"list_{spec.list_key}",
                "tags": [tag],
                "summary": f"List {spec.title}s, newest first",
                "parameters": [
                    version_header,
                    {"name": "before_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]+$"}},
                    {"name": "filter", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": _json(list_ref, "a page"), **_errors(*common_errors)},
            },
            "post": {
                "operationId": f"create_{spec.list_key}",
                "tags": [tag],
                "summary": f"Create a {spec.title}",
                "parameters": [version_header],
                "requestBody": create_body,
                "responses": {"201": _json(item_ref, "created"), **_errors(*common_errors, 403)},
            },
        }
        paths[f"{spec.path}/{{id}}"] = {
            "get": {
                "operationId": f"get_{spec.list_key}",
                "tags": [tag],
                "summary": f"Get a {spec.title}",
                "parameters": [version_header, id_parameter],
                "responses": {"200": _json(item_ref, "found"), **_errors(*common_errors)},
            },
            "patch": {
                "operationId": f"update_{spec.list_key}",
                "tags": [tag],
                "summary": f"Update a {spec.title}",
                "parameters": [version_header, id_parameter],
                "requestBody": update_body,
                "responses": {"200": _json(item_ref, "updated"), **_errors(*common_errors, 403)},
            },
            "delete": {
                "operationId": f"delete_{spec.list_key}",
                "tags": [tag],
                "summary": f"Delete a {spec.title}",
                "parameters": [version_header, id_parameter],
                "responses": {"204": {"description": "deleted"}, **_errors(*common_errors, 403)},
            },
        }
    _add_tunnel_paths(paths, schemas, version_header, id_parameter)
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "security": [],
            "responses": {
                "200": {
                    "description": "the server is up",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Burrow API",
            "version": __version__,
            "description": "A self-hosted API wire-compatible with ngrok's API version 2.",
        },
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "NgrokVersion": {
                    "name": "Ngrok-Version",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "enum": ["2"]},
                }
            },
            "schemas": schemas,
        },
    }
