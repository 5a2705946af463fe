"""Value kinds, and validation of request bodies against the fields a resource accepts.

:class:`ValueKind` is the one vocabulary for what a field holds: request validation,
response shaping, list filters and the OpenAPI document all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from burrow.domain import acl, errors


class ValueKind(StrEnum):
    """What a field's JSON value is."""

    STRING = "string"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    STRING_LIST = "string_list"
    TIMESTAMP = "timestamp"  # an RFC 3339 string
    REF = "ref"  # {"id": ..., "uri": ...}
    REF_LIST = "ref_list"
    STRING_MAP = "string_map"  # {"key": "value", ...}
    SUBJECT_NAMES = "subject_names"  # a certificate's {"dns_names": [...], "ips": [...]}


MAX_DESCRIPTION_BYTES = 255
MAX_METADATA_BYTES = 4096
MAX_NAME_BYTES = 255


def _too_long(name: str) -> Callable[[int, int], errors.BurrowError]:
    return lambda limit, size: errors.INVALID_FIELD(name=name, reason=f"longer than {limit} bytes")


@dataclass(frozen=True)
class Field:
    """A field a request may set."""

    name: str
    kind: ValueKind
    doc: str
    max_bytes: int | None = None
    # The error for a value over max_bytes: ngrok has dedicated codes for some fields.
    too_long: Callable[[int, int], errors.BurrowError] | None = None
    # For fields of ngrok's that Burrow does not implement: the values accepted (and
    # dropped, since they ask for nothing), and why any other is refused. The official
    # clients send some of them on every request, empty.
    accepts_only: tuple[Any, ...] | None = None
    unsupported_reason: str = ""
    # For a structured value: checks it (raising a BurrowError) and gives what is stored.
    check: Callable[[Any], Any] | None = None


DESCRIPTION = Field(
    "description",
    ValueKind.STRING,
    "human-readable description; optional, max 255 bytes",
    MAX_DESCRIPTION_BYTES,
    lambda limit, size: errors.DESCRIPTION_TOO_LONG(max=limit, value=size),
)
METADATA = Field(
    "metadata",
    ValueKind.STRING,
    "arbitrary user-defined machine-readable data; optional, max 4096 bytes",
    MAX_METADATA_BYTES,
    lambda limit, size: errors.METADATA_TOO_LONG(max=limit, value=size),
)
OWNER_ID = Field(
    "owner_id",
    ValueKind.STRING,
    "the user (id or email) or bot user that owns this; only admins may name someone else",
)
ACL = Field(
    "acl",
    ValueKind.STRING_LIST,
    "bind rules: '*', 'bind:*', 'bind:<domain>', 'bind:*.<domain>', 'bind:<host>:<port>', "
    "'bind:<key>=<value>' ('*' allowed for key or value); empty means no restriction",
)
PUBLIC_KEY = Field(
    "public_key",
    ValueKind.STRING,
    "the SSH public key, as an authorized_keys line: ssh-ed25519, ecdsa-sha2-nistp256/384/521 or "
    "ssh-rsa (2048 bits or more)",
    16 * 1024,
)
NAME = Field("name", ValueKind.STRING, "human-readable name of the bot user; max 255 bytes", MAX_NAME_BYTES)
ACTIVE = Field("active", ValueKind.BOOLEAN, "whether the bot user may authenticate; default true")
DOMAIN = Field(
    "domain",
    ValueKind.STRING,
    "hostname to reserve; a name without a dot is a subdomain of the server's --domain",
    253,
)
ADDR = Field(
    "addr",
    ValueKind.STRING,
    "host:port to reserve, within the server's --tcp-host and --tcp-ports; default: a free one",
    300,
)
REGION = Field(
    "region",
    ValueKind.STRING,
    "accepted for compatibility: empty or 'local', the one region of a Burrow server",
    accepts_only=("", "local"),
    unsupported_reason="a Burrow server has one region, 'local'",
)
CERTIFICATE_ID = Field(
    "certificate_id",
    ValueKind.STRING,
    "id of an uploaded /tls_certificates certificate of the account, whose names cover the domain, "
    "served for it; empty for none. Not with certificate_management_policy",
    64,
)
ACME_AUTHORITIES = ("letsencrypt",)
ACME_KEY_TYPES = ("ecdsa", "rsa")


def certificate_management_policy(value: Any) -> dict[str, str] | None:
    """ngrok's ``{"authority": "letsencrypt", "private_key_type": "ecdsa"|"rsa"}``, defaults
    filled in (letsencrypt, ecdsa); ``{}`` turns management off (None)."""
    name = "certificate_management_policy"
    if not isinstance(value, Mapping):
        raise errors.INVALID_FIELD(name=name, reason="expected an object")
    if not value:
        return None
    unknown = set(value) - {"authority", "private_key_type"}
    if unknown:
        raise errors.INVALID_FIELD(name=name, reason=f"unknown key {sorted(unknown)[0]!r}")
    authority = value.get("authority") or "letsencrypt"
    key_type = value.get("private_key_type") or "ecdsa"
    if authority not in ACME_AUTHORITIES:
        raise errors.INVALID_FIELD(name=name, reason="authority must be 'letsencrypt'")
    if key_type not in ACME_KEY_TYPES:
        raise errors.INVALID_FIELD(name=name, reason="private_key_type must be 'ecdsa' or 'rsa'")
    return {"authority": authority, "private_key_type": key_type}


CERTIFICATE_MANAGEMENT_POLICY = Field(
    "certificate_management_policy",
    ValueKind.STRING_MAP,
    "{'authority': 'letsencrypt', 'private_key_type': 'ecdsa'|'rsa'}: certificates by ACME from the "
    "server's --acme-directory (docs/certificates.md); {} turns it off",
    check=certificate_management_policy,
)
CERTIFICATE_PEM = Field(
    "certificate_pem",
    ValueKind.STRING,
    "the PEM-encoded certificate chain, leaf first",
    64 * 1024,
)
# Its value never appears in a response, a log line or an error message.
PRIVATE_KEY_PEM = Field(
    "private_key_pem",
    ValueKind.STRING,
    "the PEM-encoded private key of the leaf certificate (unencrypted); never returned",
    64 * 1024,
)
RESOLVES_TO = Field(
    "resolves_to",
    ValueKind.REF_LIST,
    "not supported: must be empty",
    accepts_only=([],),
    unsupported_reason="Burrow does not serve DNS",
)


def _check_length(spec: Field, value: str) -> None:
    if spec.max_bytes is None:
        return
    size = len(value.encode("utf-8"))
    if size > spec.max_bytes:
        raise (spec.too_long or _too_long(spec.name))(spec.max_bytes, size)


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
        if spec.accepts_only is not None:
            if value in spec.accepts_only and type(value) in {type(v) for v in spec.accepts_only}:
                continue
            raise errors.UNSUPPORTED_VALUE(name=name, reason=spec.unsupported_reason)
        if spec.check is not None:
            value = spec.check(value)
        elif spec.kind is ValueKind.STRING:
            if not isinstance(value, str):
                raise errors.INVALID_FIELD(name=name, reason="expected a string")
            _check_length(spec, value)
        elif spec.kind is ValueKind.BOOLEAN:
            if not isinstance(value, bool):
                raise errors.INVALID_FIELD(name=name, reason="expected true or false")
        elif spec.kind is ValueKind.STRING_LIST:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise errors.INVALID_FIELD(name=name, reason="expected a list of strings")
            if len(value) > acl.MAX_RULES:
                raise errors.INVALID_FIELD(name=name, reason=f"more than {acl.MAX_RULES} rules")
            try:
                value = acl.validate_rules(value)
            except acl.InvalidRule as problem:
                raise errors.INVALID_ACL_RULE(rule=problem.rule) from None
        else:
            raise TypeError(f"no request field holds a {spec.kind}")  # a mistake in a description
        values[name] = value
    return values
