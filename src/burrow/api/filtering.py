"""List filters: ngrok's CEL subset (burrow.domain.filter) applied to each item's JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from burrow.domain import errors
from burrow.domain.fields import ValueKind
from burrow.domain.filter import FilterError, compile_filter


def compile_list_filter(
    fields: Mapping[str, ValueKind], expression: str
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over one item's JSON; every item of a request is judged at the same ``now``."""
    try:
        compiled = compile_filter(expression, fields)
    except FilterError as problem:
        raise errors.INVALID_FILTER(detail=str(problem)) from None
    now = datetime.now(UTC)
    return lambda item: compiled.matches(item, now=now)
