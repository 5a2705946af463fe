"""The message scanner finds the end of one JSON object however its bytes are split."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burrow.edge.messages import MessageError, MessageScanner

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(st.text(alphabet='{}[]"\\ab', max_size=8), values, max_size=5)


def scan(pieces: list[bytes], max_bytes: int = 1 << 20, max_depth: int = 32) -> dict[str, Any] | None:
    scanner = MessageScanner(max_bytes, max_depth)
    for piece in pieces:
        if scanner.feed(piece):
            return scanner.message()
    return None


@given(objects, st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_any_split_finds_the_whole_object(value: dict[str, Any], cuts: list[int], ascii_only: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode() + b'{"next": 1}'
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert scan(pieces) == value


def test_one_byte_at_a_time() -> None:
    data = b' {"a": "}\\"]\\\\", "b": [{"c": "\\u005b"}]} trailing'
    assert scan([data[i : i + 1] for i in range(len(data))]) == {"a": '}"]\\', "b": [{"c": "["}]}


def test_an_unfinished_object_is_not_complete() -> None:
    assert scan([b'{"a": [1, 2', b', {"b": "}']) is None


@pytest.mark.parametrize(
    ("data", "fault"),
    [
        (b'{"a": ' * 9, "nest at most 8 levels"),
        (b'{"a":' + b"[" * 8, "nest at most 8 levels"),
        (b'"text"', "must be a JSON object"),
        (b"[1]", "must be a JSON object"),
        (b"{]", "not valid JSON"),
        (b'{"a": tru}', "not valid JSON"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b'{"a": "' + b"x" * 100, "limited to 64 bytes"),
    ],
)
def test_faults_are_named(data: bytes, fault: str) -> None:
    with pytest.raises(MessageError, match=fault):
        scan([data], max_bytes=64, max_depth=8)


def test_depth_within_the_limit_is_accepted() -> None:
    assert scan([b'{"a":' + b"[" * 7 + b"]" * 7 + b"}"], max_depth=8) == {"a": [[[[[[[]]]]]]]}
