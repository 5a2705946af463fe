"""The OpenAPI 3.1 document, generated from the resource descriptions that drive the handlers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from burrow import __version__
from burrow.domain import fields, ids
from burrow.domain.fields import ValueKind
from burrow.domain.resources import Operation, Resource, Shown

from .endpoints import SHAPES, WRITES

_REF_SCHEMA = {
    "type": "object",
    "required": ["id", "uri"],
    "properties": {"id": {"type": "string"}, "uri": {"type": "string", "format": "uri"}},
}
_KIND_SCHEMAS: dict[ValueKind, dict[str, Any]] = {
    ValueKind.STRING: {"type": "string"},
    ValueKind.BOOLEAN: {"type": "boolean"},
    ValueKind.INTEGER: {"type": "integer"},
    ValueKind.STRING_LIST: {"type": "array", "items": {"type": "string"}},
    ValueKind.TIMESTAMP: {"type": "string", "format": "date-time"},
    ValueKind.REF: _REF_SCHEMA,
    ValueKind.REF_LIST: {"type": "array", "items": _REF_SCHEMA},
    ValueKind.STRING_MAP: {"type": "object", "additionalProperties": {"type": "string"}},
    ValueKind.SUBJECT_NAMES: {
        "type": "object",
        "required": ["dns_names", "ips"],
        "properties": {
            "dns_names": {"type": "array", "items": {"type": "string"}},
            "ips": {"type": "array", "items": {"type": "string"}},
        },
    },
}
COMMON_ERRORS = (400, 401, 404, 405, 413, 415, 429)

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


def _shown_schema(shown: Shown) -> dict[str, Any]:
    schema = dict(_KIND_SCHEMAS[shown.kind])
    if shown.uri:
        schema["format"] = "uri"
    if shown.nullable:
        return {"oneOf": [schema, {"type": "null"}]}
    return schema


def _item_schema(resource: Resource) -> dict[str, Any]:
    properties = {shown.name: _shown_schema(shown) for shown in resource.fields}
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


def _request_body(ref: str) -> dict[str, Any]:
    return {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_SUMMARIES = {
    Operation.LIST: "List {title}s, newest first",
    Operation.CREATE: "Create a {title}",
    Operation.GET: "Get a {title}",
    Operation.UPDATE: "Update a {title}",
    Operation.DELETE: "Delete a {title}",
    Operation.STOP: "Tell the agent to stop, and end its {title}",
}
_SUCCESS = {
    Operation.LIST: "a page",
    Operation.CREATE: "created",
    Operation.GET: "found",
    Operation.UPDATE: "updated",
    Operation.DELETE: "deleted",
    Operation.STOP: "stopped",
}


def _resource_paths(
    resource: Resource, paths: dict[str, Any], schemas: dict[str, Any], version_header: Any
) -> None:
    name = "".join(part.title() for part in resource.list_key.split("_"))
    item_ref, list_ref = f"{name}Item", f"{name}List"
    schemas[item_ref] = _item_schema(resource)
    schemas[list_ref] = {
        "type": "object",
        "required": [resource.list_key, "uri", "next_page_uri"],
        "properties": {
            resource.list_key: {"type": "array", "items": {"$ref": f"#/components/schemas/{item_ref}"}},
            "uri": {"type": "string", "format": "uri"},
            "next_page_uri": {"type": ["string", "null"], "format": "uri"},
        },
    }
    bodies = {Operation.CREATE: resource.create_fields, Operation.UPDATE: resource.update_fields}
    for operation, shape in SHAPES.items():
        if operation not in resource.operations:
            continue
        parameters: list[Any] = [version_header]
        id_schema = {"type": "string", "pattern": f"^{resource.id_prefix}_[0-9A-Za-z]{{{ids.BODY_LENGTH}}}$"}
        if shape.takes_id:
            parameters.append({"name": "id", "in": "path", "required": True, "schema": id_schema})
        if shape.lists:
            parameters += [
                {"name": "before_id", "in": "query", "schema": id_schema},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^(100|[1-9][0-9]?)$"},
                },
                {"name": "filter", "in": "query", "schema": {"type": "string"}},
            ]
        statuses = COMMON_ERRORS + ((403,) if operation in WRITES or resource.admin_only else ())
        if shape.success == 204:
            success: dict[str, Any] = {"description": _SUCCESS[operation]}
        else:
            success = _json(list_ref if shape.lists else item_ref, _SUCCESS[operation])
        described: dict[str, Any] = {
            "operationId": f"{operation}_{resource.list_key}",
            "tags": [resource.title],
            "summary": _SUMMARIES[operation].format(title=resource.title),
            "parameters": parameters,
        }
        if operation in bodies:
            body_ref = f"{name}{operation.title()}"
            schemas[body_ref] = _body_schema(bodies[operation])
            described["requestBody"] = _request_body(body_ref)
        described["responses"] = {str(shape.success): success, **_errors(*statuses)}
        paths.setdefault(shape.path(resource), {})[shape.method.lower()] = described


def openapi_document(described: Iterable[Resource]) -> dict[str, Any]:
    version_header = {"$ref": "#/components/parameters/NgrokVersion"}
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for resource in described:
        _resource_paths(resource, paths, schemas, version_header)
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
    paths["/readyz"] = {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: the database answers",
            "security": [],
            "responses": {
                "200": {
                    "description": "ready to serve",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(503),
            },
        }
    }
    paths["/version"] = {
        "get": {
            "operationId": "version",
            "summary": "Burrow's version, its Python's, and the ngrok API version it speaks",
            "security": [],
            "responses": {
                "200": {
                    "description": "versions",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["version", "python", "ngrok_api_version"],
                                "properties": {
                                    "version": {"type": "string"},
                                    "python": {"type": "string"},
                                    "ngrok_api_version": {"type": "string"},
                                },
                            }
                        }
                    },
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
