"""List filters: ngrok's CEL subset (burrow.domain.filter) applied to each item's JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from burrow.domain import errors
from burrow.domain.filter import FieldType, FilterError, compile_filter

S, T, B, L = FieldType.STRING, FieldType.TIMESTAMP, FieldType.BOOLEAN, FieldType.STRING_LIST
_KEYS = {"id": S, "uri": S, "description": S, "metadata": S, "created_at": T, "owner_id": S}
FILTER_FIELDS: dict[str, dict[str, FieldType]] = {
    "keys": _KEYS,
    "credentials": {**_KEYS, "acl": L},
    "bot_users": {"id": S, "uri": S, "name": S, "active": B, "created_at": T},
    "service_users": {"id": S, "uri": S, "name": S, "active": B, "created_at": T},
    "tunnel_sessions": {
        "id": S,
        "uri": S,
        "agent_version": S,
        "ip": S,
        "metadata": S,
        "os": S,
        "region": S,
        "started_at": T,
        "transport": S,
    },
    "tunnels": {
        "id": S,
        "public_url": S,
        "started_at": T,
        "metadata": S,
        "proto": S,
        "region": S,
        "forwards_to": S,
    },
}


def compile_list_filter(list_key: str, expression: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over one item's JSON; every item of a request is judged at the same ``now``."""
    try:
        compiled = compile_filter(expression, FILTER_FIELDS[list_key])
    except FilterError as problem:
        raise errors.INVALID_FILTER(detail=str(problem)) from None
    now = datetime.now(UTC)
    return lambda item: compiled.matches(item, now=now)
