"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from burrow.domain import errors

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    kinds = [value for value in vars(errors).values() if isinstance(value, errors.ErrorKind)]
    assert kinds
    for kind in kinds:
        assert f"| {kind.code} | {kind.status} |" in text, kind.code
