"""Burrow's traffic-policy CEL agrees with cel-python (an independent CEL implementation).

Expressions are generated well-typed over string, int and bool values (variables and literals),
with comparisons, ``&& || !``, ``?:``, ``startsWith``/``endsWith``/``contains``, ``in`` on list
literals and ``size``. Excluded, because the two differ legitimately: negative numbers and
arithmetic (Burrow has none), and ``req.url`` (a string in ngrok, which cel-python's plain maps
cannot also make a map holding ``req.url.path``).
"""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burrow.domain.filter import FilterError
from burrow.domain.traffic_policy.expressions import compile_expression
from burrow.domain.traffic_policy.policy import VARIABLES

VALUES: dict[str, Any] = {
    "req.method": "GET",
    "req.host": "app.example.com",
    "req.url.path": "/api/v1/items",
    "conn.server_port": 443,
    "conn.client_port": 51234,
    "req.content_length": 0,
}
ACTIVATION = {
    "req": celpy.json_to_cel(
        {"method": "GET", "host": "app.example.com", "url": {"path": "/api/v1/items"}, "content_length": 0}
    ),
    "conn": celpy.json_to_cel({"server_port": 443, "client_port": 51234}),
}
CEL = celpy.Environment()

words = st.sampled_from(["", "GET", "/api", "items", "app", ".com", "/", "é", "a'b", 'x"y'])
string_literal = words.map(lambda word: '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"')
strings = st.one_of(string_literal, st.sampled_from(["req.method", "req.host", "req.url.path"]))
ints = st.one_of(
    st.integers(min_value=0, max_value=60000).map(str),
    st.sampled_from(["conn.server_port", "conn.client_port", "req.content_length"]),
)
comparison = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _bools(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(["&&", "||", "==", "!="]), inner
        ),
        inner.map(lambda a: f"!({a})"),
        st.builds(lambda c, a, b: f"({c} ? {a} : {b})", inner, inner, inner),
        st.builds(
            lambda c, a, b, op, d: f"(({c} ? {a} : {b}) {op} {d})", inner, ints, ints, comparison, ints
        ),
    )


atoms = st.one_of(
    st.sampled_from(["true", "false"]),
    st.builds(lambda a, op, b: f"{a} {op} {b}", ints, comparison, ints),
    st.builds(lambda a, op, b: f"{a} {op} {b}", strings, comparison, strings),
    st.builds(
        lambda a, m, b: f"{a}.{m}({b})",
        strings,
        st.sampled_from(["startsWith", "endsWith", "contains"]),
        strings,
    ),
    st.builds(lambda a, items: f"{a} in [{', '.join(items)}]", strings, st.lists(strings, max_size=3)),
    st.builds(lambda a, items: f"{a} in [{', '.join(items)}]", ints, st.lists(ints, min_size=1, max_size=3)),
    st.builds(lambda a, op, b: f"size({a}) {op} {b}", strings, comparison, ints),
    st.builds(lambda a, op, b: f"{a}.size() {op} {b}", strings, comparison, ints),
)
# Atoms in parentheses: relations are one left-associative level in CEL, so `a == b < c` is a type error.
expressions = st.recursive(atoms.map(lambda atom: f"({atom})"), _bools, max_leaves=12)
# Hypothesis warns that the nested strategies' repr is large; it is only their description.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


@settings(max_examples=400, deadline=None)
@given(expressions)
def test_burrow_and_cel_python_agree(text: str) -> None:
    expected = CEL.program(CEL.compile(text)).evaluate(ACTIVATION)
    try:
        compiled = compile_expression(text, VARIABLES["on_http_request"])
    except FilterError as error:
        if "nested more than" in str(error):
            return  # Burrow's depth limit; cel-python has none this low
        raise
    assert compiled.evaluate(VALUES) is bool(expected), text


@pytest.mark.parametrize(
    "text",
    [
        'req.method == "GET" ? conn.server_port == 443 : false',
        '"/api" + "x" == ""',
        "req.method == 1",
    ],
)
def test_the_type_errors_cel_python_also_reports(text: str) -> None:
    """Where Burrow refuses at compile time, so does CEL's checker (here: arithmetic aside)."""
    if "+" in text:
        with pytest.raises(FilterError, match="arithmetic"):
            compile_expression(text, VARIABLES["on_http_request"])
        return
    if "== 1" in text:
        with pytest.raises(FilterError, match="cannot compare string with int"):
            compile_expression(text, VARIABLES["on_http_request"])
        return
    assert compile_expression(text, VARIABLES["on_http_request"]).evaluate(VALUES) is True
    assert bool(CEL.program(CEL.compile(text)).evaluate(ACTIVATION)) is True
