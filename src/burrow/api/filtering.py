"""List filters: ngrok's CEL subset (see burrow.domain.filter) applied to a resource's JSON."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from burrow.domain import errors


def compile_list_filter(list_key: str, expression: str) -> Callable[[Mapping[str, Any]], bool]:
    raise errors.INVALID_FILTER(detail="filters are not supported yet")
