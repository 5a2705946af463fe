"""The docs stay true to the code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from burrow.domain import errors
from burrow.domain.limits import AgentLimits, ApiLimits
from tests.harness import burrow

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_error_code_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    kinds = [value for value in vars(errors).values() if isinstance(value, errors.ErrorKind)]
    assert kinds
    for kind in kinds:
        assert f"| {kind.code} | {kind.status} |" in text, kind.code


def test_every_limit_is_an_option_and_documented() -> None:
    text = (DOCS / "limits.md").read_text()
    readme = (DOCS.parent / "README.md").read_text()
    usage = burrow("serve", "--help", env={"COLUMNS": "200"}).stdout
    for limits, prefix in ((ApiLimits, "--api-"), (AgentLimits, "--agent-")):
        for item in dataclasses.fields(limits):
            flag = prefix + item.name.replace("_", "-")
            assert f"| `{flag}` |" in text, flag
            assert f"`{flag}`" in readme, flag
            assert flag in usage, flag
    assert "## Public listeners" in text
