"""The CEL subset of list filters: parsing, type checking, evaluation, and every way to fail."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burrow.domain.filter import (
    MAX_DEPTH,
    MAX_EXPRESSION_LENGTH,
    Filter,
    FilterError,
    ValueKind,
    compile_filter,
)

FIELDS: Mapping[str, ValueKind] = {
    "id": ValueKind.STRING,
    "description": ValueKind.STRING,
    "metadata": ValueKind.STRING,
    "owner_id": ValueKind.STRING,
    "created_at": ValueKind.TIMESTAMP,
    "acl": ValueKind.STRING_LIST,
    "active": ValueKind.BOOLEAN,
}
NOW = datetime(2025, 6, 15, 12, 0, 0, tzinfo=UTC)
CREDENTIAL: Mapping[str, object] = {
    "id": "cr_2abc",
    "description": "laptop",
    "metadata": "",
    "owner_id": "usr_1",
    "created_at": "2025-06-15T06:00:00Z",  # six hours before NOW
    "acl": ["bind:example.com", "bind:*.example.org"],
    "active": True,
}


def compile_(expression: str) -> Filter:
    return compile_filter(expression, FIELDS)


def matches(expression: str, obj: Mapping[str, object] = CREDENTIAL, now: datetime = NOW) -> bool:
    return compile_(expression).matches(obj, now=now)


def error(expression: str) -> FilterError:
    with pytest.raises(FilterError) as caught:
        compile_(expression)
    return caught.value


# --- Literals and operators ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("true", True),
        ("false", False),
        ("!true", False),
        ("!false", True),
        ("!!true", True),
        ("true && true", True),
        ("true && false", False),
        ("false || true", True),
        ("false || false", False),
        ("true && true && true && false", False),
        ("false || false || false || true", True),
        ("1 < 2", True),
        ("2 < 2", False),
        ("2 <= 2", True),
        ("3 <= 2", False),
        ("2 == 2", True),
        ("2 != 2", False),
        ("3 >= 2", True),
        ("1 >= 2", False),
        ("3 > 2", True),
        ("2 > 2", False),
        ('"a" < "b"', True),
        ('"b" < "a"', False),
        ('"Z" < "a"', True),  # by code point, not by locale
        ('"é" > "z"', True),
        ('"abc" == "abc"', True),
        ('"abc" != "abd"', True),
        ("false < true", True),
        ("true == true", True),
        ("null == null", True),
        ("null != null", False),
        ('null == ""', True),
        ("0 == 0", True),
        ("9223372036854775807 > 0", True),
        ("[] == []", True),
        ('["a", "b"] == ["a", "b"]', True),
        ('["a", "b"] == ["b", "a"]', False),
        ('["a"] != ["a", "b"]', True),
        ("[1, 2,] == [1, 2]", True),  # trailing comma, as in CEL
    ],
)
def test_operators(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # ! binds tighter than comparisons (and they tighter than && and ||).
        ("!false == true", True),
        ("!(false == true)", True),
        ("!true == false", True),
        ("!(true == false)", True),
        # && binds tighter than ||.
        ("true || true && false", True),
        ("(true || true) && false", False),
        ("false && true || true", True),
        ("false && (true || true)", False),
        # Comparisons bind tighter than && and ||.
        ("1 < 2 && 2 < 3", True),
        ("1 > 2 || 2 < 3", True),
        ("1 == 1 && 2 == 3 || 4 == 4", True),
        ("1 == 1 && (2 == 3 || 4 == 5)", False),
        # Comparisons are left-associative, as in CEL.
        ("1 < 2 == true", True),
        ("2 < 1 == false", True),
        ('"a" in ["a"] == true', True),
        # Whitespace, including line breaks, is free.
        (" \t1\n<\r\n2\f", True),
    ],
)
def test_precedence(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


# --- Strings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"plain"', "plain"),
        ("'single'", "single"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r'"a\"b"', 'a"b'),
        (r"'a\'b'", "a'b"),
        (r'"back\\slash"', "back\\slash"),
        (r'"\a\b\f\n\r\t\v"', "\a\b\f\n\r\t\v"),
        (r'"\`\?"', "`?"),
        (r'"\x41\x7a"', "Az"),
        (r'"\u00e9"', "é"),
        (r'"\U0001F600"', "\U0001f600"),
        (r'"\101\141"', "Aa"),
        (r'"\000"', "\x00"),
        ('"é 😀 snowman ☃"', "é 😀 snowman ☃"),
        ('""', ""),
        (r'r"raw\n"', "raw\\n"),
        (r"R'raw\d'", "raw\\d"),
        ('"""triple "quoted" string"""', 'triple "quoted" string'),
        ("'''two\nlines'''", "two\nlines"),
    ],
)
def test_string_literals(literal: str, value: str) -> None:
    assert compile_filter(f"obj.description == {literal}", FIELDS).matches({"description": value})
    assert not compile_filter(f"obj.description == {literal}", FIELDS).matches({"description": value + "x"})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('obj.id.startsWith("cr_")', True),
        ('obj.id.startsWith("ak_")', False),
        ('obj.id.endsWith("abc")', True),
        ('obj.id.endsWith("cr_")', False),
        ('obj.id.contains("2a")', True),
        ('obj.id.contains("zz")', False),
        ('obj.id.contains("")', True),
        ('"literal".startsWith("lit")', True),
        ("obj.description.startsWith(obj.description)", True),
        ('!obj.id.startsWith("ak_")', True),
        ('obj.id.startsWith("cr_") && obj.owner_id.endsWith("_1")', True),
    ],
)
def test_string_methods(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('size("") == 0', True),
        ('size("abc") == 3', True),
        ('"abc".size() == 3', True),
        ('size("é😀") == 2', True),  # code points, as in CEL, not bytes
        ("size(obj.description) == 6", True),
        ("obj.description.size() > 5", True),
        ("size(obj.acl) == 2", True),
        ("obj.acl.size() == 2", True),
        ("size([]) == 0", True),
        ("size([1, 2, 3]) == 3", True),
        ("size(obj.metadata) == 0", True),
    ],
)
def test_size(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


# --- in and lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('obj.owner_id in ["usr_1", "usr_2"]', True),
        ('obj.owner_id in ["usr_2", "usr_3"]', False),
        ("obj.owner_id in []", False),
        ('"bind:example.com" in obj.acl', True),
        ('"bind:other.com" in obj.acl', False),
        ("2 in [1, 2, 3]", True),
        ("4 in [1, 2, 3]", False),
        ("true in [false]", False),
        ('!(obj.owner_id in ["usr_2"])', True),
        ('obj.id in [obj.owner_id, "cr_2abc"]', True),
        ('obj.created_at in [timestamp("2025-06-15T06:00:00Z")]', True),
        ('obj.metadata in ["x", null]', True),  # null stands for empty, here as in ==
        ('"" in [null]', True),
    ],
)
def test_in(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


# --- Emptiness: null, "" and [] ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acl", "empty"),
    [([], True), ((), True), (None, True), ("missing", True), (["*"], False), ([""], False)],
)
def test_list_field_emptiness(acl: object, empty: bool) -> None:
    obj = {"owner_id": "usr_1"} if acl == "missing" else {"owner_id": "usr_1", "acl": acl}
    for expression in (
        "obj.acl == null",
        'obj.acl == ""',
        "null == obj.acl",
        '"" == obj.acl',
        "obj.acl == []",
    ):
        assert compile_(expression).matches(obj) is empty, expression
    for expression in ("obj.acl != null", 'obj.acl != ""', "obj.acl != []", "size(obj.acl) > 0"):
        assert compile_(expression).matches(obj) is not empty, expression
    ngrok_example = 'obj.owner_id == "usr_1" && (obj.acl == null || obj.acl == "")'
    assert compile_(ngrok_example).matches(obj) is empty


@pytest.mark.parametrize(
    ("description", "empty"), [("", True), (None, True), ("missing", True), ("x", False), (" ", False)]
)
def test_string_field_emptiness(description: object, empty: bool) -> None:
    obj = {} if description == "missing" else {"description": description}
    assert compile_('obj.description == ""').matches(obj) is empty
    assert compile_("obj.description == null").matches(obj) is empty
    assert compile_("obj.description != null").matches(obj) is not empty
    assert compile_("size(obj.description) == 0").matches(obj) is empty


def test_null_equals_only_empty_values() -> None:
    assert not matches("obj.active == null")
    assert matches("obj.active == null", {"active": None})
    assert matches("obj.active == null", {})
    assert not matches("obj.active == null", {"active": False})  # false is a value, not emptiness
    assert not matches("obj.created_at == null")
    assert matches("obj.created_at == null", {})
    assert not matches("0 == null")
    assert not matches("false == null")


# --- Timestamps and durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('obj.created_at > timestamp(time.now).subtract("24h")', True),
        ('obj.created_at > timestamp(time.now).subtract("7h")', True),
        ('obj.created_at > timestamp(time.now).subtract("5h")', False),
        ('obj.created_at > time.now.subtract("6h")', False),
        ('obj.created_at >= time.now.subtract("6h")', True),
        ('obj.created_at == time.now.subtract("6h")', True),
        ('obj.created_at == timestamp(time.now).subtract("5h60m")', True),
        ('obj.created_at == time.now.subtract("1h").subtract("5h")', True),
        ('obj.created_at == time.now.subtract("21600s")', True),
        ('obj.created_at == time.now.subtract("21600000ms")', True),
        ('obj.created_at == time.now.subtract("21600000000us")', True),
        ('obj.created_at == time.now.subtract("1d").add("18h")', True),
        ('obj.created_at < time.now.add("0s")', True),
        ('obj.created_at > time.now.subtract("7d")', True),
        ('obj.created_at > time.now.subtract("1d1h1m1s")', True),
        ('obj.created_at < time.now.subtract("5h30m")', True),
        ('obj.created_at < time.now.subtract("15m")', True),
        ('obj.created_at < time.now.subtract("30s")', True),
        ('obj.created_at.add("6h") == time.now', True),
        ("timestamp(obj.created_at) == obj.created_at", True),
        ("time.now == timestamp(time.now)", True),
        ('obj.created_at == timestamp("2025-06-15T06:00:00Z")', True),
        ('obj.created_at == timestamp("2025-06-15T08:30:00+02:30")', True),
        ('obj.created_at == timestamp("2025-06-14T23:00:00-07:00")', True),
        ('obj.created_at == timestamp("2025-06-15t06:00:00z")', True),
        ('obj.created_at < timestamp("2025-06-15T06:00:00.000001Z")', True),
        ('obj.created_at == timestamp("2025-06-15T06:00:00.0000001Z")', True),  # below microseconds
        ('obj.created_at > timestamp("2025-06-15T05:59:59.999999999Z")', True),
        ('timestamp("2024-02-29T00:00:00Z") < timestamp("2024-03-01T00:00:00Z")', True),
    ],
)
def test_timestamps(expression: str, expected: bool) -> None:
    assert matches(expression) is expected


@pytest.mark.parametrize(
    "created_at",
    [
        "2025-06-15T06:00:00Z",
        "2025-06-15T06:00:00+00:00",
        "2025-06-15T07:00:00+01:00",
        datetime(2025, 6, 15, 6, 0, 0),  # naive: stored times are UTC
        datetime(2025, 6, 15, 6, 0, 0, tzinfo=UTC),
        datetime(2025, 6, 15, 1, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_timestamp_fields_accept_strings_and_datetimes(created_at: object) -> None:
    assert matches('obj.created_at == timestamp("2025-06-15T06:00:00Z")', {"created_at": created_at})


def test_now_is_injected_and_defaults_to_the_current_time() -> None:
    recent = compile_('obj.created_at > time.now.subtract("1h")')
    assert recent.matches(CREDENTIAL, now=datetime(2025, 6, 15, 6, 30, tzinfo=UTC))
    assert not recent.matches(CREDENTIAL, now=datetime(2025, 6, 15, 7, 30, tzinfo=UTC))
    assert recent.matches(CREDENTIAL, now=datetime(2025, 6, 15, 6, 30))  # naive now means UTC
    assert not recent.matches(CREDENTIAL)  # the real clock is well past 2025-06-15
    assert recent.matches({"created_at": datetime.now(UTC) - timedelta(minutes=5)})


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"created_at": None},
        {"created_at": "not a time"},
        {"created_at": "2025-06-15"},
        {"created_at": 1718431200},
        {"created_at": "2025-02-30T00:00:00Z"},
        {"created_at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))},  # before year 1 in UTC
    ],
)
def test_a_missing_or_unreadable_timestamp_matches_no_ordering(obj: Mapping[str, object]) -> None:
    assert not matches('obj.created_at > timestamp("2000-01-01T00:00:00Z")', obj)
    assert not matches('obj.created_at <= timestamp("2000-01-01T00:00:00Z")', obj)
    assert not matches('!(obj.created_at > timestamp("2000-01-01T00:00:00Z"))', obj)
    assert not matches('obj.created_at.add("1h") > timestamp("2000-01-01T00:00:00Z")', obj)


def test_undefined_is_absorbed_by_and_and_or_as_in_cel() -> None:
    undefined = "obj.created_at > time.now"  # with no created_at
    assert not matches(f"{undefined} || false", {})
    assert matches(f"{undefined} || true", {})
    assert matches(f"true || {undefined}", {})
    assert not matches(f"{undefined} && true", {})
    assert not matches(f"false && {undefined}", {})
    assert matches(f"!({undefined} && false)", {})
    assert not matches(f"!({undefined} && true)", {})
    assert not matches("obj.active", {})  # a null boolean is no condition
    assert not matches("!obj.active", {})
    assert matches("obj.active || true", {})


def test_timestamp_overflow_while_evaluating_is_undefined_not_an_exception() -> None:
    assert not matches('timestamp("9999-12-31T23:59:59Z").add("1d") > time.now')
    assert not matches('time.now.subtract("999999999d") < time.now')
    assert matches('time.now.subtract("999999999d") < time.now || true')


def test_boolean_fields() -> None:
    assert matches("obj.active")
    assert matches("obj.active == true")
    assert not matches("!obj.active")
    assert matches("!obj.active", {"active": False})
    assert matches('obj.active && obj.id.startsWith("cr_")')


def test_values_of_the_wrong_type_in_the_object_never_match_nor_raise() -> None:
    odd = {"id": 5, "acl": "bind:*", "active": "yes", "created_at": object(), "description": ["x"]}
    for expression in (
        'obj.id == "5"',
        'obj.id != "5"',
        '"bind:*" in obj.acl',
        "obj.active",
        "obj.created_at < time.now",
        'obj.description.contains("x")',
        "size(obj.description) == 1",
        "obj.acl == null",
    ):
        assert not matches(expression, odd), expression
    assert not matches('"x" in obj.acl', {"acl": ["x", 1]})


# --- Errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # Syntax.
        ("", "the filter is empty"),
        ("   ", "the filter is empty"),
        ("obj.id ==", "expected a value, found the end of the filter at column 10"),
        ('obj.id == "a" obj.id', "expected an operator or the end of the filter, found 'obj' at column 15"),
        ("(true", "expected ')', found the end of the filter at column 6"),
        ("true)", "expected an operator or the end of the filter, found ')' at column 5"),
        ("[1, 2", "expected ',' or ']', found the end of the filter"),
        ("[,]", "expected a value, found ','"),
        ("size(1,)", "expected a value, found ')'"),
        ("size(1 2)", "expected ',' or ')', found the number '2'"),
        ("&& true", "expected a value, found '&&' at column 1"),
        ("obj", "expected '.' and a field name after 'obj'"),
        ("obj.", "expected a field name after 'obj.', found the end of the filter"),
        ("obj.1", "expected a field name after 'obj.', found the number '1'"),
        ("obj.id.", "expected a method name after '.'"),
        ("time", "expected '.now' after 'time'"),
        ("time.later", "time has only one member, time.now"),
        ("in [1]", "expected a value before 'in'"),
        ("id == 'x'", "unknown name 'id'; fields are written obj.<field>"),
        ("now()", "unknown function 'now'"),
        ("has(obj.id)", "unknown function 'has'"),
        ("startsWith(obj.id, 'x')", "startsWith() is a method: write x.startsWith(...)"),
        ("obj.id.lower() == 'x'", "unknown method 'lower'"),
        ("obj.description.id == 'x'", "only fields of obj can be selected"),
        ("(true)(false)", "only named functions and methods can be called"),
        ("size(obj.id, obj.id) == 1", "size() takes 1 argument, not 2"),
        ("obj.id.size(1) == 1", "size() takes 0 arguments, not 1"),
        ("obj.id.contains() ", "contains() takes 1 argument, not 0"),
        ("timestamp() < time.now", "timestamp() takes 1 argument, not 0"),
        ('time.now.add("1h", "2h") > time.now', "add() takes 1 argument, not 2"),
        ("1 = 1", "'=' is not an operator; compare with '=='"),
        ("true & true", "'&' is not an operator; use '&&'"),
        ("true | true", "'|' is not an operator; use '||'"),
        ("obj.id == `x`", "unexpected character '`'"),
        ('obj.id == "\u00e9" ; true', "unexpected character ';'"),
        # Unknown fields.
        ("obj.name == 'x'", "unknown field 'name' (filterable fields: acl, active, created_at,"),
        # Things the subset leaves out on purpose.
        ("obj.acl[0] == 'x'", "indexing is not supported at column 8"),
        ('obj.id["a"]', "indexing is not supported"),
        ("size(obj.acl) + 1 > 2", "arithmetic (+ - * / %) is not supported at column 15"),
        ("size(obj.acl) > -1", "arithmetic (+ - * / %) is not supported"),
        ("2 * 3 == 6", "arithmetic"),
        ("6 / 3 == 2", "arithmetic"),
        ("6 % 3 == 0", "arithmetic"),
        ("true ? true : false", "the conditional operator (? :) is not supported"),
        ('obj.id.matches("^cr_")', "regular expressions (matches) are not supported"),
        ('matches(obj.id, "^cr_")', "regular expressions (matches) are not supported"),
        ("{'a': 1} == {}", "maps are not supported"),
        ("1.5 < 2", "floating-point numbers are not supported"),
        ("1e3 < 2", "floating-point numbers are not supported"),
        ("1u < 2", "malformed number"),
        ("0x10 < 2", "malformed number"),
        ("b'bytes' == b''", "bytes literals are not supported"),
        ("9223372036854775808 > 0", "integer '9223372036854775808' is out of range"),
        ("99999999999999999999999999 > 0", "is out of range"),
        # Strings.
        ('obj.id == "open', "unterminated string at column 11"),
        ("obj.id == 'open", "unterminated string"),
        ('obj.id == "a\nb"', "unterminated string (use \\n for a line break)"),
        ('obj.id == """open', "unterminated string"),
        ('obj.id == "\\', "unterminated string"),
        (r'obj.id == "\q"', r"invalid escape sequence '\\q'"),
        (r'obj.id == "\8"', "invalid escape sequence"),
        (r'obj.id == "\x4"', "\\x needs 2 hexadecimal digits"),
        (r'obj.id == "\u12g4"', "\\u needs 4 hexadecimal digits"),
        (r'obj.id == "\U00110000"', "invalid code point U+110000"),
        (r'obj.id == "\ud800"', "invalid code point U+D800"),
        # Types.
        ('"a" < 1', "cannot compare a string with an int using '<' at column 5"),
        ("obj.id == 1", "cannot compare a string with an int using '=='"),
        ("obj.active == 'true'", "cannot compare a bool with a string using '=='"),
        ('obj.created_at > "2024-01-01T00:00:00Z"', 'write the time as timestamp("...")'),
        ("obj.acl < obj.acl", "cannot compare a list of strings with a list of strings using '<'"),
        ("null < null", "cannot compare null with null using '<'"),
        ("obj.created_at < null", "cannot compare a timestamp with null"),
        ('obj.acl == "bind:*"', 'a list can be compared with a string only to test emptiness (== "")'),
        ("obj.acl == 0", 'a list can be compared only with null, "" or a list, not an int'),
        ("obj.acl == [1]", "cannot compare a list of strings with a list of ints"),
        ('obj.id in "cr_1"', "the right side of 'in' must be a list, not a string"),
        ('["a"] in obj.acl', "'in' looks for one value in a list, not a list"),
        ("1 in obj.acl", "cannot look for an int in a list of strings"),
        ('[1, "a"] == []', "a list cannot mix an int and a string"),
        ("[[1]] == []", "lists of lists are not supported"),
        ("!obj.id", "'!' needs a bool, not a string"),
        ("obj.id && true", "'&&' needs a bool, not a string at column 1"),
        ("true || 1", "'||' needs a bool, not an int at column 9"),
        ("size(1) == 1", "size() needs a string or a list, not an int"),
        ("size(obj.active) == 1", "size() needs a string or a list, not a bool"),
        ("obj.acl.startsWith('x')", "startsWith() needs a string, not a list of strings"),
        ("obj.id.endsWith(1)", "the argument of endsWith() needs a string, not an int"),
        ('obj.id.add("1h") > time.now', "add() and subtract() needs a timestamp, not a string"),
        ("obj.id", "the filter must be a condition, not a string"),
        ("size(obj.acl)", "the filter must be a condition, not an int"),
        ("null", "the filter must be a condition, not null"),
        ("time.now", "the filter must be a condition, not a timestamp"),
        ("[true]", "the filter must be a condition, not a list of bools"),
        ("timestamp(1) < time.now", "timestamp() takes an RFC 3339 string literal or time.now, not an int"),
        ("timestamp(obj.id) < time.now", "timestamp() takes an RFC 3339 string literal or time.now"),
        # Timestamp and duration literals.
        ('timestamp("2024-01-01") < time.now', "'2024-01-01' is not an RFC 3339 timestamp"),
        ('timestamp("2024-01-01 00:00:00Z") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("2024-01-01T00:00:00") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("2024-02-30T00:00:00Z") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("2024-01-01T24:00:00Z") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("2024-01-01T00:00:60Z") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("2024-01-01T00:00:00+24:00") < time.now', "is not an RFC 3339 timestamp"),
        ('timestamp("0001-01-01T00:00:00+01:00") < time.now', "is not an RFC 3339 timestamp"),
        # Non-ASCII (fullwidth) digits are not digits to RFC 3339.
        ('timestamp("\uff12\uff10\uff12\uff14-01-01T00:00:00Z") < time.now', "is not an RFC 3339 timestamp"),
        ('time.now.subtract("") < time.now', "invalid duration ''"),
        ('time.now.subtract("7") < time.now', "invalid duration '7'"),
        ('time.now.subtract("1y") < time.now', "invalid duration '1y'"),
        ('time.now.subtract("1.5h") < time.now', "invalid duration '1.5h'"),
        ('time.now.subtract("-1h") < time.now', "invalid duration '-1h'"),
        ('time.now.subtract("1h ") < time.now', "invalid duration '1h '"),
        ('time.now.subtract("1 h") < time.now', "invalid duration '1 h'"),
        ('time.now.subtract("999999999999999d") < time.now', "duration '999999999999999d' is too long"),
        ("time.now.subtract(24) < time.now", 'the duration must be a string literal such as "24h"'),
        ("time.now.subtract(obj.id) < time.now", "the duration must be a string literal"),
    ],
)
def test_errors(expression: str, message: str) -> None:
    assert message in str(error(expression))


def test_error_positions_point_at_the_problem() -> None:
    problem = error('obj.id == "x" &&\n  obj.nope == "y"')
    assert str(problem) == (
        "unknown field 'nope' (filterable fields: acl, active, created_at, description, id, "
        "metadata, owner_id) at line 2, column 7"
    )
    assert problem.reason.startswith("unknown field 'nope'")
    assert problem.position == 23
    assert error("obj.id == 1").position == 7
    assert error("").position is None


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)


def test_no_fields_at_all() -> None:
    with pytest.raises(FilterError, match=r"\(filterable fields: none\)"):
        compile_filter("obj.x", {})
    assert compile_filter("1 < 2", {}).matches({})


def test_field_types_may_be_given_by_their_values() -> None:
    kinds = {"name": "string", "tags": "string_list", "on": "boolean", "at": "timestamp"}
    compiled = compile_filter(
        'obj.name == "x" && "t" in obj.tags && obj.on && obj.at < time.now',
        kinds,  # type: ignore[arg-type]
    )
    assert compiled.matches({"name": "x", "tags": ["t"], "on": True, "at": "2000-01-01T00:00:00Z"})


# --- Limits --------------------------------------------------------------------------------------


def test_expression_length_is_capped() -> None:
    longest = "true" + " " * (MAX_EXPRESSION_LENGTH - 4)
    assert compile_(longest).matches({})
    problem = error(longest + " ")
    assert str(problem) == f"the filter is longer than {MAX_EXPRESSION_LENGTH} characters"


@pytest.mark.parametrize(
    "deep",
    [
        "(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1),
        "(" * 4000,
        "!" * (MAX_DEPTH + 1) + "true",
        "!" * 4000 + "true",
        "[" * 4000,
        "size(" * 800,
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        "time.now" + '.add("1s")' * (MAX_DEPTH + 1) + " > time.now",
        "true" + " == true" * (MAX_DEPTH + 1),
    ],
)
def test_nesting_depth_is_capped(deep: str) -> None:
    assert f"nested more than {MAX_DEPTH} levels deep" in str(error(deep))


def test_reasonable_nesting_is_fine() -> None:
    assert matches("(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH)
    assert matches("!" * (MAX_DEPTH - 2) + "true")  # an even count of negations
    assert matches("time.now" + '.add("1s")' * (MAX_DEPTH - 2) + " > time.now")
    nested = "true"
    for _ in range(MAX_DEPTH // 2 - 1):
        nested = f"!(false || {nested})"  # two levels each: ! and ||
    assert matches(nested) is ((MAX_DEPTH // 2 - 1) % 2 == 0)


def test_long_chains_of_and_and_or_stay_flat() -> None:
    clause = 'obj.id == "x" || '
    chain = clause * ((MAX_EXPRESSION_LENGTH - 20) // len(clause)) + "obj.id == obj.id"
    assert len(chain) <= MAX_EXPRESSION_LENGTH
    assert matches(chain)
    conjunction = " && ".join(["true"] * 500)
    assert matches(conjunction)


def test_worst_case_inputs_compile_quickly() -> None:
    started = time.monotonic()
    for text in (
        'obj.id in ["' + "a" * 4000 + '"]',
        "[" + "1," * 2040 + "]" + " == []",
        "\\" * 4096,
        '"' + "\\u0041" * 680 + '"' + ' == ""',
        " || ".join(["obj.acl == null"] * 220),
    ):
        try:
            compiled = compile_(text[:MAX_EXPRESSION_LENGTH])
        except FilterError:
            continue
        compiled.matches(CREDENTIAL)
    assert time.monotonic() - started < 1


def test_filter_is_immutable_and_reusable() -> None:
    compiled = compile_('obj.owner_id == "usr_1"')
    assert compiled.expression == 'obj.owner_id == "usr_1"'
    with pytest.raises(AttributeError):
        compiled.expression = "true"  # type: ignore[misc]
    assert compiled.matches({"owner_id": "usr_1"})
    assert not compiled.matches({"owner_id": "usr_2"})
    assert compiled.matches({"owner_id": "usr_1"})


# --- Properties ----------------------------------------------------------------------------------

TOKENS = [
    "obj.id", "obj.acl", "obj.created_at", "obj.active", "obj.description", "obj.nope", "obj",
    "time.now", "timestamp(", "size(", ".size()", ".startsWith(", ".contains(", ".endsWith(",
    '.add("1h")', '.subtract("7d")', ".matches(", "(", ")", "[", "]", ",", ".", "!", "&&", "||",
    "<", "<=", "==", "!=", ">=", ">", "in", "true", "false", "null", "0", "42", "-", "+", "?", ":",
    '"x"', "'y'", '""', '"2025-01-01T00:00:00Z"', '"\\u00e9"', '"\\', "r'\\d'", '"""', " ", "\n",
]  # fmt: skip

OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=5), st.none(), st.integers()),
        "description": st.text(max_size=5),
        "acl": st.one_of(st.lists(st.text(max_size=3), max_size=3), st.none(), st.text(max_size=2)),
        "active": st.one_of(st.booleans(), st.none()),
        "created_at": st.one_of(
            st.datetimes(timezones=st.just(UTC)),
            st.datetimes(),
            st.text(max_size=5),
            st.none(),
            st.just("2025-01-01T00:00:00Z"),
        ),
    },
)


def _compile_and_run(expression: str, obj: Mapping[str, object], now: datetime) -> None:
    try:
        compiled = compile_(expression)
    except FilterError as problem:
        assert str(problem)
        return
    assert compiled.matches(obj, now=now) in (True, False)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200), OBJECTS, st.datetimes(timezones=st.just(UTC)))
def test_arbitrary_text_only_ever_raises_filter_error(
    expression: str, obj: Mapping[str, object], now: datetime
) -> None:
    _compile_and_run(expression, obj, now)


@settings(max_examples=600, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join), OBJECTS, st.datetimes())
def test_token_soup_only_ever_raises_filter_error(
    expression: str, obj: Mapping[str, object], now: datetime
) -> None:
    _compile_and_run(expression, obj, now)


@settings(max_examples=30, deadline=2000)
@given(st.sampled_from(["(", "!", "[", "size(", "timestamp(", "!(", "[("]), st.integers(0, 2000))
def test_deep_prefixes_never_exhaust_the_stack(prefix: str, repeat: int) -> None:
    _compile_and_run((prefix * repeat)[:MAX_EXPRESSION_LENGTH], {}, NOW)


def cel_string(text: str) -> str:
    """``text`` as a double-quoted CEL string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


@settings(max_examples=200, deadline=1000)
@given(st.text(max_size=30))
def test_any_string_survives_quoting(text: str) -> None:
    assert matches(f"obj.description == {cel_string(text)}", {"description": text})
    assert matches(f"size({cel_string(text)}) == {len(text)}")


WELL_FORMED_OBJECTS = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["cr_1", "cr_2", "ak_1"]),
        "owner_id": st.sampled_from(["usr_1", "usr_2"]),
        "acl": st.lists(st.sampled_from(["*", "bind:a.com", "bind:k=v"]), max_size=3),
        "active": st.booleans(),
        "created_at": st.datetimes(
            min_value=datetime(2025, 6, 1), max_value=datetime(2025, 6, 30), timezones=st.just(UTC)
        ),
    }
)
CONDITIONS = st.one_of(
    st.sampled_from(["true", "false", "obj.active", "obj.acl == null", 'obj.acl != ""']),
    st.sampled_from(["cr_1", "cr_", "ak", "1"]).flatmap(
        lambda text: st.sampled_from(
            [
                f'obj.id == "{text}"',
                f'obj.id < "{text}"',
                f'obj.id.startsWith("{text}")',
                f'obj.id.endsWith("{text}")',
                f'obj.id.contains("{text}")',
                f'obj.owner_id in ["usr_1", "{text}"]',
                f'"{text}" in obj.acl',
            ]
        )
    ),
    st.integers(0, 4).map(lambda size: f"size(obj.acl) >= {size}"),
    st.integers(0, 400).map(lambda hours: f'obj.created_at > time.now.subtract("{hours}h")'),
)
EXPRESSIONS = st.recursive(
    CONDITIONS,
    lambda inner: st.one_of(
        inner.map(lambda operand: f"!({operand})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]}) && ({pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]}) || ({pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]}) == ({pair[1]})"),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=1000)
@given(EXPRESSIONS, EXPRESSIONS, WELL_FORMED_OBJECTS)
def test_well_formed_filters_obey_boolean_logic(first: str, second: str, obj: Mapping[str, object]) -> None:
    a, b = matches(first, obj), matches(second, obj)
    assert matches(f"!({first})", obj) is (not a)
    assert matches(f"({first}) && ({second})", obj) is (a and b)
    assert matches(f"({first}) || ({second})", obj) is (a or b)
    assert matches(f"!({first}) || !({second})", obj) is matches(f"!(({first}) && ({second}))", obj)
    assert matches(f"({first}) != ({second})", obj) is (a != b)
