"""The SQL a list filter compiles to selects exactly what evaluating the filter selects.

Hypothesis draws rows (stored through the real store, in SQLite) and expressions from the
filter grammar; for each pair, the rows the compiled SQL condition plus the residual keep
must be the rows the Python evaluator keeps on their JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from burrow.domain.filter import compile_filter
from burrow.domain.resources import BOT_USERS, CREDENTIALS, Resource
from burrow.store.filter_sql import split_filter
from burrow.store.store import BOT_USERS as BOT_KIND
from burrow.store.store import CREDENTIALS as CREDENTIAL_KIND
from burrow.store.store import Kind, Store

BASE = "http://testserver"
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
# Characters that trip up SQL text handling: NUL, non-ASCII, the largest code point, case.
TEXT = st.text(alphabet=["a", "b", "B", "é", "\x00", "\U0010ffff", " "], max_size=4)
RULES = ["bind:a.example.com", "bind:*.example.com", "bind:x=y"]
MOMENTS = st.datetimes(datetime(2025, 1, 1), datetime(2027, 1, 1)).map(lambda m: m.replace(microsecond=0))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    opened = Store.open(Path(tmp_path_factory.mktemp("filter_sql")))
    yield opened
    opened.close()


def cel_string(text: str) -> str:
    escaped = "".join(
        "\\" + char if char in '"\\' else f"\\x{ord(char):02x}" if ord(char) < 32 else char for char in text
    )
    return f'"{escaped}"'


def cel_time(moment: datetime) -> str:
    return f'timestamp("{moment.isoformat()}Z")'


EMPTIES = ["null", '""', "[]"]
# The fields rows vary most in come twice, to be drawn more often.
STRING_FIELDS = [
    "obj.id",
    "obj.description",
    "obj.description",
    "obj.metadata",
    "obj.metadata",
    "obj.owner_id",
    "obj.uri",
]


@st.composite
def credential_atoms(draw: st.DrawFn, values: list[str]) -> str:
    """One condition; ``values`` (what the rows hold, and their prefixes and suffixes) make
    literals that sit on the edges of what the rows hold."""
    field = draw(st.sampled_from(STRING_FIELDS))
    text = st.one_of(st.sampled_from(values or [""]), TEXT).map(cel_string)
    literal = draw(text)
    choice = draw(st.integers(0, 13))
    if choice <= 2:
        operator = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"{field} {operator} {literal}" if choice < 2 else f"{literal} {operator} {field}"
    if choice <= 5:
        method = ["startsWith", "contains", "endsWith"][choice - 3]
        return f"{field}.{method}({literal})"
    if choice == 6:
        literals = draw(st.lists(st.one_of(text, st.just("null")), max_size=3))
        return (
            f"{field} in [{', '.join(literals)}]"
            if draw(st.booleans())
            else f"{literal} in [{field}, {', '.join(literals) or literal}]"
        )
    if choice == 7:
        return draw(st.sampled_from([f"{field} == null", "obj.description == obj.metadata", "true", "false"]))
    if choice == 8:
        return f"size({field}) {draw(st.sampled_from(['==', '>']))} {draw(st.integers(0, 3))}"
    if choice == 9:
        operator = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"obj.created_at {operator} {cel_time(draw(MOMENTS))}"
    if choice == 10:
        return draw(
            st.sampled_from(
                [
                    f'obj.created_at > timestamp(time.now).subtract("{draw(st.integers(0, 900))}d")',
                    "obj.created_at == null",
                    f"obj.created_at in [{cel_time(draw(MOMENTS))}, null]",
                ]
            )
        )
    if choice == 11:
        return f"obj.acl {draw(st.sampled_from(['==', '!=']))} {draw(st.sampled_from(EMPTIES))}"
    if choice == 12:
        acl = [cel_string(r) for r in draw(st.lists(st.sampled_from(RULES), max_size=2))]
        return f"obj.acl == [{', '.join(acl)}]"
    return f"{cel_string(draw(st.sampled_from(RULES)))} in obj.acl"


def expressions(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            inner.map(lambda e: f"!({e})"),
            st.lists(inner, min_size=2, max_size=3).map(lambda es: " && ".join(f"({e})" for e in es)),
            st.lists(inner, min_size=2, max_size=3).map(lambda es: " || ".join(f"({e})" for e in es)),
        ),
        max_leaves=6,
    )


def stored(store: Store, kind: Kind[Any], rows: list[dict[str, Any]], moments: list[datetime]) -> str:
    """A fresh account holding ``rows``; its id."""
    user, _ = store.create_account(f"u{datetime.now().timestamp()}@example.com")
    for row, moment in zip(rows, moments, strict=True):
        values = {"owner_id": user.id, **row} if kind is CREDENTIAL_KIND else row
        item, _ = store.create(kind, user.account_id, values)
        with store.engine.begin() as connection:
            connection.execute(update(kind.table).where(kind.table.c.id == item.id).values(created_at=moment))
    return user.account_id


def agree(store: Store, resource: Resource, kind: Kind[Any], account_id: str, expression: str) -> bool:
    """Assert SQL plus residual selects what Python does; whether it all went to SQL."""
    compiled = compile_filter(expression, resource.filter_fields)
    everything = list(store.iterate(kind, account_id, None))
    expected = [i.id for i in everything if compiled.matches(resource.represent(i, BASE), now=NOW)]
    columns = store.filter_columns(kind, f"{BASE}{resource.path}/")
    columns = {name: column for name, column in columns.items() if name in resource.filter_fields}
    split = split_filter(compiled, columns, NOW, store.dialect())
    kept = store.iterate(kind, account_id, None, where=split.condition)
    residual = split.residual
    got = [i.id for i in kept if residual is None or residual.matches(resource.represent(i, BASE), now=NOW)]
    assert got == expected, (expression, split.condition)
    return split.compiled_all


ROW = st.fixed_dictionaries(
    {"description": TEXT, "metadata": TEXT, "acl": st.lists(st.sampled_from(RULES), max_size=2, unique=True)}
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=6), moments=st.lists(MOMENTS, min_size=6, max_size=6), data=st.data())
def test_compiled_credential_filters_agree(
    store: Store, rows: list[dict[str, Any]], moments: list[datetime], data: st.DataObject
) -> None:
    account_id = stored(store, CREDENTIAL_KIND, rows, moments[: len(rows)])
    held = [
        text
        for item in store.iterate(CREDENTIAL_KIND, account_id, None)
        for text in (item.id, item.description, item.metadata)
    ]
    values = [part for text in held for n in range(len(text) + 1) for part in (text[:n], text[n:])]
    expression = data.draw(expressions(credential_atoms(values)))
    agree(store, CREDENTIALS, CREDENTIAL_KIND, account_id, expression)


# Every string of up to two characters over a small alphabet, so that prefixes, orderings
# and character handling all have rows on both sides of any literal.
ALPHABET = ["a", "b", "é", "\x00", "\U0010ffff"]
CATALOGUE = ["", *ALPHABET, *(x + y for x in ALPHABET for y in ALPHABET)]


@pytest.fixture(scope="module")
def catalogue(store: Store) -> str:
    rows = [
        {"description": text, "metadata": text[::-1] + "a", "acl": RULES[: index % 4]}
        for index, text in enumerate(CATALOGUE)
    ]
    start = datetime(2026, 5, 1)
    return stored(store, CREDENTIAL_KIND, rows, [start + timedelta(days=i) for i in range(len(rows))])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_compiled_filters_agree_over_a_catalogue(store: Store, catalogue: str, data: st.DataObject) -> None:
    literals = [*CATALOGUE, *(text + "a" for text in CATALOGUE)]
    expression = data.draw(expressions(credential_atoms(literals)))
    agree(store, CREDENTIALS, CREDENTIAL_KIND, catalogue, expression)


BOT_ATOMS = st.one_of(
    st.just("obj.active"),
    st.sampled_from(["==", "!=", "<", ">="]).map(lambda op: f"obj.active {op} true"),
    st.just("obj.active == null"),
    st.just("obj.active in [false, null]"),
    TEXT.map(lambda t: f"obj.name >= {cel_string(t)}"),
    TEXT.map(lambda t: f"obj.name.startsWith({cel_string(t)})"),
)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.fixed_dictionaries({"name": TEXT, "active": st.booleans()}), max_size=5),
    moments=st.lists(MOMENTS, min_size=5, max_size=5),
    expression=expressions(BOT_ATOMS),
)
def test_compiled_bot_user_filters_agree(
    store: Store, rows: list[dict[str, Any]], moments: list[datetime], expression: str
) -> None:
    account_id = stored(store, BOT_KIND, rows, moments[: len(rows)])
    agree(store, BOT_USERS, BOT_KIND, account_id, expression)


@pytest.mark.parametrize(
    "expression",
    [
        'obj.id in ["cr_1", "cr_2"]',
        'obj.description == "a" || obj.metadata != ""',
        'obj.owner_id.startsWith("usr_") && !(obj.description.contains("b"))',
        'obj.created_at > timestamp(time.now).subtract("7d")',
        'obj.acl == null && obj.uri >= "http://"',
    ],
)
def test_common_filters_compile_entirely(store: Store, expression: str) -> None:
    rows = [
        {"description": "a", "metadata": "", "acl": []},
        {"description": "b", "metadata": "m", "acl": RULES[:1]},
    ]
    account_id = stored(store, CREDENTIAL_KIND, rows, [NOW.replace(tzinfo=None) - timedelta(days=1)] * 2)
    assert agree(store, CREDENTIALS, CREDENTIAL_KIND, account_id, expression)


def test_what_sql_cannot_say_is_left_to_python(store: Store) -> None:
    rows = [{"description": "ab", "metadata": "", "acl": RULES[:2]}]
    account_id = stored(store, CREDENTIAL_KIND, rows, [NOW.replace(tzinfo=None)])
    expression = 'obj.description == "ab" && size(obj.acl) == 2 && obj.description.endsWith("b")'
    compiled = compile_filter(expression, CREDENTIALS.filter_fields)
    columns = store.filter_columns(CREDENTIAL_KIND, f"{BASE}/credentials/")
    split = split_filter(compiled, columns, NOW, store.dialect())
    assert split.residual is not None and not split.compiled_all
    assert "description" in str(split.condition)
    assert not agree(store, CREDENTIALS, CREDENTIAL_KIND, account_id, expression)
