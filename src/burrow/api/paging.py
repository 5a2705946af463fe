"""List responses: newest first, id-keyed cursor, ``next_page_uri`` carrying the query."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from burrow.domain import errors
from burrow.domain.resources import Resource

from . import http
from .filtering import compile_list_filter

MAX_PAGE = 100
LIST_PARAMETERS = ("before_id", "limit", "filter")


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return MAX_PAGE
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 12:
        raise errors.LIMIT_NOT_A_NUMBER(max=MAX_PAGE, value=text)
    value = int(text)
    if not 1 <= value <= MAX_PAGE:
        raise errors.LIMIT_OUT_OF_RANGE(max=MAX_PAGE, value=value)
    return value


class ListQuery:
    """The list parameters of a request, checked."""

    def __init__(self, request: Request, id_prefixes: tuple[str, ...]) -> None:
        self.values = http.single_query_values(request, LIST_PARAMETERS)
        self.before_id = self.values.get("before_id") or None
        if self.before_id is not None:
            http.check_id(self.before_id, id_prefixes)
        self.limit = parse_limit(self.values.get("limit"))
        self.filter = self.values.get("filter") or None


def page(
    resource: Resource,
    query: ListQuery,
    base: str,
    items: Iterable[Any],
    keep: Callable[[Mapping[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """One page of ``items`` (already newest first and older than ``before_id``), shaped.

    ``keep`` judges each item's JSON; by default the query's filter, if any, does.
    """
    shaped: Iterable[Mapping[str, Any]] = (resource.represent(item, base) for item in items)
    if keep is None and query.filter:
        keep = compile_list_filter(resource.filter_fields, query.filter)
    if keep is not None:
        predicate = keep
        shaped = (item for item in shaped if predicate(item))
    chosen = list(islice(shaped, query.limit + 1))
    next_page_uri = None
    uri = f"{base}{resource.path}"
    if len(chosen) > query.limit:
        chosen = chosen[: query.limit]
        next_query = {**query.values, "before_id": chosen[-1]["id"]}
        next_page_uri = f"{uri}?{urlencode(next_query)}"
    return {resource.list_key: chosen, "uri": uri, "next_page_uri": next_page_uri}
