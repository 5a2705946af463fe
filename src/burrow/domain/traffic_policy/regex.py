"""Regular expressions for policies, in RE2 (linear time: a tenant's pattern cannot stall the edge)."""

from __future__ import annotations

from typing import Protocol, cast

import re2  # type: ignore[import-untyped,import-not-found,unused-ignore]

MAX_PATTERN_LENGTH = 1024


class Match(Protocol):
    def group(self, index: int = 0) -> str | None: ...
    def start(self) -> int: ...
    def end(self) -> int: ...


class Regex(Protocol):
    groups: int

    def search(self, text: str) -> Match | None: ...


def compile_regex(pattern: str) -> Regex:
    """The compiled pattern, or ValueError saying why not."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return cast(Regex, re2.compile(pattern))
    except re2.error as error:
        reason = error.args[0] if error.args else error
        raise ValueError(reason.decode() if isinstance(reason, bytes) else str(reason)) from None
