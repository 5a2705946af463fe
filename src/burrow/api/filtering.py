"""List filters: ngrok's CEL subset (burrow.domain.filter), answered by SQL where it can be.

A filter is checked on the event loop (a bad one answers ``ERR_NGROK_250`` at once); the
list is then read in a worker thread, because even a filter the database answers may scan
the whole account. What SQL cannot decide (burrow.store.filter_sql) is checked in Python
on each row SQL keeps, within a row budget, and the whole list, SQL included, within a time
budget (the database's statements are interrupted at the deadline): past either the request
answers ``ERR_NGROK_90250`` rather than holding a thread (and the GIL, or the database) for as
long as it likes. One account runs one filtered list at a time, so its filters never queue
another account's behind them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from burrow.domain import errors
from burrow.domain.deadline import Deadline
from burrow.domain.fields import ValueKind
from burrow.domain.filter import Filter, FilterError, compile_filter
from burrow.store.store import FILTER_ROWS, FILTER_SECONDS

# Rows a residual filter may examine for one page, and the time the whole list may take.
ROW_BUDGET = FILTER_ROWS
TIME_BUDGET = FILTER_SECONDS

T = TypeVar("T")


class ListFilter:
    """A checked filter and the ``now`` every item of one request is judged at."""

    def __init__(self, fields: Mapping[str, ValueKind], expression: str) -> None:
        try:
            self.compiled: Filter = compile_filter(expression, fields)
        except FilterError as problem:
            raise errors.INVALID_FILTER(detail=str(problem)) from None
        self.now = datetime.now(UTC)

    def predicate(self, residual: Filter | None = None) -> Callable[[Mapping[str, Any]], bool]:
        """Whether an item's JSON matches ``residual`` (default: the whole filter)."""
        chosen = self.compiled if residual is None else residual
        now = self.now
        return lambda item: chosen.matches(item, now=now)


def compile_list_filter(
    fields: Mapping[str, ValueKind], expression: str
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over one item's JSON (for lists held in memory)."""
    return ListFilter(fields, expression).predicate()


def within_budget(items: Iterable[T], deadline: Deadline) -> Iterator[T]:
    """``items``, refusing (ERR_NGROK_90250) past ROW_BUDGET items or ``deadline``."""
    rows, seconds = ROW_BUDGET, TIME_BUDGET
    for count, item in enumerate(items, 1):
        if count > rows or deadline.passed():
            raise errors.FILTER_OVER_BUDGET(rows=rows, seconds=seconds)
        yield item
