"""Validation of request bodies against the fields a resource accepts.

Everything a request may set is declared here once; the API validates with it and the
OpenAPI document is generated from it, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from burrow.domain import acl, errors

Kind = Literal["string", "boolean", "string_list"]

MAX_DESCRIPTION_BYTES = 255
MAX_METADATA_BYTES = 4096
MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    doc: str
    max_bytes: int | None = None


DESCRIPTION = Field(
    "description",
    "string",
    "human-readable description; optional, max 255 bytes",
    MAX_DESCRIPTION_BYTES,
)
METADATA = Field(
    "metadata",
    "string",
    "arbitrary user-defined machine-readable data; optional, max 4096 bytes",
    MAX_METADATA_BYTES,
)
OWNER_ID = Field(
    "owner_id",
    "string",
    "the user (id or email) or bot user that owns this; only admins may name someone else",
)
ACL = Field(
    "acl",
    "string_list",
    "bind rules: '*', 'bind:*', 'bind:<domain>', 'bind:*.<domain>', 'bind:<host>:<port>', "
    "'bind:<key>=<value>' ('*' allowed for key or value); empty means no restriction",
)
NAME = Field("name", "string", "human-readable name of the bot user; max 255 bytes", MAX_NAME_BYTES)
ACTIVE = Field("active", "boolean", "whether the bot user may authenticate; default true")


def _check_length(spec: Field, value: str) -> None:
    if spec.max_bytes is None:
        return
    size = len(value.encode("utf-8"))
    if size <= spec.max_bytes:
        return
    if spec is DESCRIPTION:
        raise errors.DESCRIPTION_TOO_LONG(max=spec.max_bytes, value=size)
    if spec is METADATA:
        raise errors.METADATA_TOO_LONG(max=spec.max_bytes, value=size)
    raise errors.INVALID_FIELD(name=spec.name, reason=f"longer than {spec.max_bytes} bytes")


def validate(body: object, accepted: tuple[Field, ...]) -> dict[str, Any]:
    """The body's fields, checked; raises :class:`errors.BurrowError` on the first problem.

    JSON ``null`` counts as "not given", as it does for ngrok's own clients, which drop
    ``None`` fields. Unknown fields are refused rather than ignored, so a typo is not
    silently lost.
    """
    if not isinstance(body, Mapping):
        raise errors.UNPARSABLE_BODY(reason="the body must be a JSON object")
    by_name = {spec.name: spec for spec in accepted}
    values: dict[str, Any] = {}
    for name, value in body.items():
        spec = by_name.get(name)
        if spec is None:
            raise errors.UNKNOWN_FIELD(name=name, supported=", ".join(s.name for s in accepted) or "(none)")
        if value is None:
            continue
        if spec.kind == "string":
            if not isinstance(value, str):
                raise errors.INVALID_FIELD(name=name, reason="expected a string")
            _check_length(spec, value)
        elif spec.kind == "boolean":
            if not isinstance(value, bool):
                raise errors.INVALID_FIELD(name=name, reason="expected true or false")
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise errors.INVALID_FIELD(name=name, reason="expected a list of strings")
            if len(value) > acl.MAX_RULES:
                raise errors.INVALID_FIELD(name=name, reason=f"more than {acl.MAX_RULES} rules")
            try:
                value = acl.validate_rules(value)
            except acl.InvalidRule as problem:
                raise errors.INVALID_ACL_RULE(rule=problem.rule) from None
        values[name] = value
    return values
