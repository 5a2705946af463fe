"""List filters: the subset of CEL that ngrok's API accepts in ``filter``, evaluated against ``obj``.

:func:`compile_filter` lexes, parses and type-checks an expression once, so every mistake
(syntax, unknown field, type error, too long, too deep) is a :class:`FilterError` before any
object is looked at; :meth:`Filter.matches` then evaluates the tree against each object.

Supported: ``obj.<field>``; string literals (``"..."``, ``'...'``, triple-quoted, ``r"..."``
raw, with CEL's escapes), integers, ``true``, ``false``, ``null``, list literals ``[..]``;
``!``, ``&&``, ``||``, ``< <= == != >= >``, ``in``; parentheses; ``size(x)`` and ``x.size()``;
``timestamp("<RFC 3339>")``, ``timestamp(time.now)`` and ``time.now``; ``.add("1h30m")`` and
``.subtract("7d")`` on timestamps (units d, h, m, s, ms, us); ``startsWith``, ``contains`` and
``endsWith`` on strings. Precedence, loosest first: ``||``, ``&&``, comparisons and ``in``
(left-associative), ``!``, member calls.

Choices where CEL, or ngrok's description of its subset, leaves room:

* Emptiness: ``null`` equals a missing value, ``""`` and an empty list, and nothing else, so
  ``obj.acl == null`` and ``obj.acl == ""`` both mean "no rules" and ``obj.description == null``
  means "no description". A list may be compared with ``==``/``!=`` only to ``null``, to the
  literal ``""`` or to another list.
* Missing fields read as ``""`` (strings), ``[]`` (lists) or ``null`` (timestamps, booleans).
* Types are checked before evaluation, as CEL's checker does: ``"1" == 1`` or
  ``obj.created_at > "2024-01-01T00:00:00Z"`` is an error, not ``false``. Ordering works on
  strings (by code point), integers, booleans and timestamps.
* A comparison that cannot be made while evaluating (a missing timestamp, a boolean field that
  is null, a timestamp pushed out of range by ``add``) is undefined, like a CEL runtime error:
  ``false && undefined`` is false, ``true || undefined`` is true, ``!undefined`` stays
  undefined, and an object whose filter ends undefined does not match.
* Not supported, and rejected with a message saying so: indexing, arithmetic (including
  negative numbers), the ternary operator, ``matches`` (regular expressions), maps, floats,
  unsigned and bytes literals, and selecting fields of anything but ``obj``.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Final, Literal, TypeAlias

from .fields import ValueKind

MAX_EXPRESSION_LENGTH: Final = 4096
# Applies both to open brackets/calls/``!`` while parsing and to the depth of the finished tree,
# which bounds recursion in the parser, the checker and the evaluator.
MAX_DEPTH: Final = 32


class FilterError(ValueError):
    """An expression that cannot be compiled; ``str()`` says what is wrong and where."""

    def __init__(self, reason: str, position: int | None = None, expression: str = "") -> None:
        self.reason = reason
        self.position = position  # 0-based offset into the expression, when there is one
        message = reason if position is None else f"{reason} {_where(expression, position)}"
        super().__init__(message)


def _where(expression: str, position: int) -> str:
    column = position - expression.rfind("\n", 0, position)
    if "\n" not in expression:
        return f"at column {column}"
    return f"at line {expression.count(chr(10), 0, position) + 1}, column {column}"


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- Lexer ---------------------------------------------------------------------------------------

TokenKind: TypeAlias = Literal["int", "string", "name", "symbol", "end"]


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str  # the source text of the token (for strings, the raw source)
    value: int | str | None
    position: int


_NAME_START: Final = frozenset(string.ascii_letters + "_")
_NAME_CHARS: Final = _NAME_START | frozenset(string.digits)
_DIGITS: Final = frozenset(string.digits)
_HEX_DIGITS: Final = frozenset(string.hexdigits)
_OCTAL_DIGITS: Final = frozenset(string.octdigits)
_SPACE: Final = frozenset(" \t\n\r\f")
_TWO_CHAR_SYMBOLS: Final = ("&&", "||", "<=", ">=", "==", "!=")
_ONE_CHAR_SYMBOLS: Final = frozenset("<>!()[],.")
_ARITHMETIC = "arithmetic (+ - * / %) is not supported"
_TERNARY = "the conditional operator (? :) is not supported"
_UNSUPPORTED_SYMBOLS: Final = {
    "+": _ARITHMETIC,
    "-": _ARITHMETIC,
    "*": _ARITHMETIC,
    "/": _ARITHMETIC,
    "%": _ARITHMETIC,
    "?": _TERNARY,
    ":": _TERNARY,
    "{": "maps are not supported",
    "}": "maps are not supported",
    "=": "'=' is not an operator; compare with '=='",
    "&": "'&' is not an operator; use '&&'",
    "|": "'|' is not an operator; use '||'",
}
_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_HEX_ESCAPE_LENGTHS: Final = {"x": 2, "u": 4, "U": 8}
_INT64_MAX: Final = 2**63 - 1


class _Lexer:
    def __init__(self, text: str, extra_symbols: frozenset[str] = frozenset()) -> None:
        # Traffic policies' CEL (burrow.domain.traffic_policy.expressions) also lexes ? : as symbols.
        self._text = text
        self._extra_symbols = extra_symbols

    def _error(self, reason: str, position: int) -> FilterError:
        return FilterError(reason, position, self._text)

    def tokens(self) -> list[_Token]:
        text = self._text
        tokens: list[_Token] = []
        index = 0
        while index < len(text):
            char = text[index]
            start = index
            if char in _SPACE:
                index += 1
            elif char in _NAME_START:
                while index < len(text) and text[index] in _NAME_CHARS:
                    index += 1
                name = text[start:index]
                if index < len(text) and text[index] in "\"'":
                    if name in ("r", "R"):
                        value, index = self._string(index, raw=True)
                        tokens.append(_Token("string", text[start:index], value, start))
                        continue
                    if name.lower() in ("b", "rb", "br"):
                        raise self._error("bytes literals are not supported", start)
                tokens.append(_Token("name", name, None, start))
            elif char in _DIGITS:
                index = self._number_end(start)
                digits = text[start:index]
                # Past 19 digits it is out of range anyway; don't make int() chew on it.
                if len(digits) > 19 or int(digits) > _INT64_MAX:
                    raise self._error(f"integer {_excerpt(digits)} is out of range", start)
                tokens.append(_Token("int", digits, int(digits), start))
            elif char in "\"'":
                value, index = self._string(index, raw=False)
                tokens.append(_Token("string", text[start:index], value, start))
            elif text.startswith(_TWO_CHAR_SYMBOLS, index):
                tokens.append(_Token("symbol", text[index : index + 2], None, start))
                index += 2
            elif char in _ONE_CHAR_SYMBOLS or char in self._extra_symbols:
                tokens.append(_Token("symbol", char, None, start))
                index += 1
            elif char in _UNSUPPORTED_SYMBOLS:
                raise self._error(_UNSUPPORTED_SYMBOLS[char], start)
            else:
                raise self._error(f"unexpected character {char!r}", start)
        tokens.append(_Token("end", "", None, len(text)))
        return tokens

    def _number_end(self, start: int) -> int:
        text = self._text
        index = start
        while index < len(text) and text[index] in _DIGITS:
            index += 1
        following, after_that = text[index : index + 1], text[index + 1 : index + 2]
        if following in ("e", "E") or (following == "." and after_that in _DIGITS):
            raise self._error("floating-point numbers are not supported", start)
        if following in _NAME_CHARS:
            raise self._error(
                "malformed number (only decimal integers are supported, without suffixes)", start
            )
        return index

    def _string(self, start: int, raw: bool) -> tuple[str, int]:
        """The value of the string literal whose opening quote is at ``start``, and its end."""
        text = self._text
        quote = text[start]
        delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
        index = start + len(delimiter)
        parts: list[str] = []
        while True:
            if index >= len(text):
                raise self._error("unterminated string", start)
            if text.startswith(delimiter, index):
                return "".join(parts), index + len(delimiter)
            char = text[index]
            if char in "\r\n" and len(delimiter) == 1:
                raise self._error("unterminated string (use \\n for a line break)", start)
            if char == "\\" and not raw:
                decoded, index = self._escape(index)
                parts.append(decoded)
            else:
                parts.append(char)
                index += 1

    def _escape(self, start: int) -> tuple[str, int]:
        """The character an escape sequence starting at ``start`` (a backslash) stands for."""
        text = self._text
        code = text[start + 1 : start + 2]
        if code == "":
            raise self._error("unterminated string", start)
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code], start + 2
        if code in _HEX_ESCAPE_LENGTHS:
            end = start + 2 + _HEX_ESCAPE_LENGTHS[code]
            digits = text[start + 2 : end]
            if len(digits) != end - start - 2 or not set(digits) <= _HEX_DIGITS:
                raise self._error(f"\\{code} needs {end - start - 2} hexadecimal digits", start)
            return self._code_point(int(digits, 16), start), end
        digits = text[start + 1 : start + 4]
        if code in "0123" and len(digits) == 3 and set(digits) <= _OCTAL_DIGITS:
            return self._code_point(int(digits, 8), start), start + 4
        raise self._error(f"invalid escape sequence {_excerpt(chr(92) + code)}", start)

    def _code_point(self, value: int, position: int) -> str:
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise self._error(f"invalid code point U+{value:X} in escape sequence", position)
        return chr(value)


# --- Syntax tree ---------------------------------------------------------------------------------
# Every node keeps the offset of the token that introduced it, for error messages.


@dataclass(frozen=True)
class _Constant:
    value: str | int | bool | None
    position: int


@dataclass(frozen=True)
class _Field:
    name: str
    kind: ValueKind
    position: int


@dataclass(frozen=True)
class _ListLiteral:
    items: tuple[_Node, ...]
    position: int


@dataclass(frozen=True)
class _Now:
    position: int


@dataclass(frozen=True)
class _TimestampLiteral:
    value: datetime  # UTC
    position: int


@dataclass(frozen=True)
class _AsTimestamp:
    """``timestamp(x)`` where x is not a string literal; it must already be a timestamp."""

    operand: _Node
    position: int


@dataclass(frozen=True)
class _Not:
    operand: _Node
    position: int


@dataclass(frozen=True)
class _Logical:
    # n-ary, so long chains of && or || make a flat node rather than a deep tree
    operator: Literal["&&", "||"]
    operands: tuple[_Node, ...]
    position: int


@dataclass(frozen=True)
class _Compare:
    operator: str  # one of _ORDERINGS, "==", "!=" or "in"
    left: _Node
    right: _Node
    position: int


@dataclass(frozen=True)
class _Size:
    operand: _Node
    position: int


@dataclass(frozen=True)
class _StringTest:
    method: _StringMethod
    receiver: _Node
    argument: _Node
    position: int


@dataclass(frozen=True)
class _Shift:
    """``ts.add(d)`` or ``ts.subtract(d)``; the duration is a literal, so it is known here."""

    receiver: _Node
    delta: timedelta  # negative for subtract
    position: int


_Node: TypeAlias = (
    _Constant
    | _Field
    | _ListLiteral
    | _Now
    | _TimestampLiteral
    | _AsTimestamp
    | _Not
    | _Logical
    | _Compare
    | _Size
    | _StringTest
    | _Shift
)

_ORDERINGS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">=": operator.ge,
    ">": operator.gt,
}
_RELATIONS: Final = frozenset({*_ORDERINGS, "==", "!="})
_StringMethod: TypeAlias = Literal["startsWith", "endsWith", "contains"]
# The names as the Literal type, so that a checked name is typed as one of them.
_STRING_TESTS: Final[dict[str, _StringMethod]] = {
    "startsWith": "startsWith",
    "endsWith": "endsWith",
    "contains": "contains",
}


# --- Literals with a grammar of their own: RFC 3339 times and durations ----------------------------

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:[Zz]|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DURATION_PART: Final = re.compile(r"(\d{1,15})(ms|us|d|h|m|s)", re.ASCII)
_DURATION_UNITS: Final = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
    "us": timedelta(microseconds=1),
}


def _parse_rfc3339(text: str) -> datetime | None:
    """The instant, in UTC, or None; fractions beyond microseconds are truncated."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match[group]) for group in range(1, 7))
    microsecond = int(((match[7] or "") + "000000")[:6])
    offset = timedelta(0)
    if match[8] is not None:
        offset_hours, offset_minutes = int(match[9]), int(match[10])
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = timedelta(hours=offset_hours, minutes=offset_minutes)
        if match[8] == "-":
            offset = -offset
    try:
        moment = datetime(year, month, day, hour, minute, second, microsecond, timezone(offset))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # day 31 of a 30-day month; out of range once in UTC
        return None


def _parse_duration(text: str) -> timedelta | None:
    """``"1h30m"`` and the like (integers with units d, h, m, s, ms, us), or None."""
    if text == "":
        return None
    total = timedelta(0)
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            return None
        total += int(match[1]) * _DURATION_UNITS[match[2]]  # may raise OverflowError
        position = match.end()
    return total


def _as_utc(moment: datetime) -> datetime:
    # Burrow stores naive datetimes that mean UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- Parser --------------------------------------------------------------------------------------


def _describe_token(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "string":
        return f"the string {_excerpt(token.text)}"
    if token.kind == "int":
        return f"the number {_excerpt(token.text)}"
    return repr(token.text)


class _Parser:
    """Recursive descent over the token list; builds the tree, checks names and arities."""

    def __init__(self, text: str, fields: Mapping[str, ValueKind]) -> None:
        self._text = text
        self._fields = fields
        self._tokens = _Lexer(text).tokens()
        self._index = 0
        self._nesting = 0

    def parse(self) -> _Node:
        if self._peek().kind == "end":
            raise FilterError("the filter is empty")
        root = self._or()
        if self._peek().kind != "end":
            raise self._unexpected("an operator or the end of the filter")
        return root

    # Token helpers.

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _at(self, symbol: str) -> bool:
        token = self._peek()
        return token.kind == "symbol" and token.text == symbol

    def _accept(self, symbol: str) -> bool:
        if self._at(symbol):
            self._advance()
            return True
        return False

    def _expect(self, symbol: str, expected: str | None = None) -> _Token:
        if not self._at(symbol):
            raise self._unexpected(expected or repr(symbol))
        return self._advance()

    def _error(self, reason: str, position: int) -> FilterError:
        return FilterError(reason, position, self._text)

    def _unexpected(self, expected: str) -> FilterError:
        token = self._peek()
        return self._error(f"expected {expected}, found {_describe_token(token)}", token.position)

    @contextmanager
    def _nested(self, position: int) -> Iterator[None]:
        self._nesting += 1
        try:
            if self._nesting > MAX_DEPTH:
                raise self._error(f"the filter is nested more than {MAX_DEPTH} levels deep", position)
            yield
        finally:
            self._nesting -= 1

    # Grammar, loosest binding first.

    def _or(self) -> _Node:
        return self._logical("||", self._and)

    def _and(self) -> _Node:
        return self._logical("&&", self._relation)

    def _logical(self, symbol: Literal["&&", "||"], operand: Callable[[], _Node]) -> _Node:
        operands = [operand()]
        position = self._peek().position
        while self._accept(symbol):
            operands.append(operand())
        return operands[0] if len(operands) == 1 else _Logical(symbol, tuple(operands), position)

    def _relation(self) -> _Node:
        node = self._unary()
        while True:
            token = self._peek()
            is_relation = token.kind == "symbol" and token.text in _RELATIONS
            if not (is_relation or (token.kind == "name" and token.text == "in")):
                return node
            self._advance()
            node = _Compare(token.text, node, self._unary(), token.position)

    def _unary(self) -> _Node:
        token = self._peek()
        if not self._accept("!"):
            return self._member()
        with self._nested(token.position):
            return _Not(self._unary(), token.position)

    def _member(self) -> _Node:
        node = self._primary()
        while True:
            if self._accept("."):
                name = self._advance()
                if name.kind != "name":
                    raise self._error(
                        f"expected a method name after '.', found {_describe_token(name)}", name.position
                    )
                if not self._at("("):
                    raise self._error(
                        f"only fields of obj can be selected, not .{name.text} of another value",
                        name.position,
                    )
                node = self._method(node, name, self._arguments())
            elif self._at("["):
                raise self._error("indexing is not supported", self._peek().position)
            elif self._at("("):
                raise self._error("only named functions and methods can be called", self._peek().position)
            else:
                return node

    def _primary(self) -> _Node:
        token = self._advance()
        if token.kind in ("int", "string"):
            return _Constant(token.value, token.position)
        if token.kind == "symbol" and token.text == "(":
            with self._nested(token.position):
                node = self._or()
                self._expect(")", "')'")
            return node
        if token.kind == "symbol" and token.text == "[":
            return self._list(token)
        if token.kind == "name":
            return self._named(token)
        raise self._error(f"expected a value, found {_describe_token(token)}", token.position)

    def _named(self, token: _Token) -> _Node:
        name = token.text
        if name in ("true", "false"):
            return _Constant(name == "true", token.position)
        if name == "null":
            return _Constant(None, token.position)
        if name == "obj":
            return self._field(token)
        if name == "time":
            self._expect(".", "'.now' after 'time'")
            now = self._advance()
            if now.kind != "name" or now.text != "now":
                raise self._error("time has only one member, time.now", now.position)
            return _Now(token.position)
        if self._at("("):
            return self._function(token, self._arguments())
        if name == "in":
            raise self._error("expected a value before 'in'", token.position)
        raise self._error(f"unknown name {name!r}; fields are written obj.<field>", token.position)

    def _field(self, obj: _Token) -> _Node:
        self._expect(".", "'.' and a field name after 'obj'")
        name = self._advance()
        if name.kind != "name":
            raise self._error(
                f"expected a field name after 'obj.', found {_describe_token(name)}", name.position
            )
        kind = self._fields.get(name.text)
        if kind is None:
            known = ", ".join(sorted(self._fields)) or "none"
            raise self._error(f"unknown field {name.text!r} (filterable fields: {known})", name.position)
        return _Field(name.text, kind, obj.position)

    def _list(self, opening: _Token) -> _Node:
        items: list[_Node] = []
        with self._nested(opening.position):
            while not self._accept("]"):  # a trailing comma is allowed, as in CEL
                items.append(self._or())
                if not self._accept(","):
                    self._expect("]", "',' or ']'")
                    break
        return _ListLiteral(tuple(items), opening.position)

    def _arguments(self) -> list[_Node]:
        opening = self._expect("(")
        arguments: list[_Node] = []
        with self._nested(opening.position):
            if self._accept(")"):
                return arguments
            while True:
                arguments.append(self._or())
                if self._accept(")"):
                    return arguments
                self._expect(",", "',' or ')'")

    def _arity(self, name: _Token, arguments: list[_Node], expected: int) -> None:
        if len(arguments) != expected:
            plural = "" if expected == 1 else "s"
            raise self._error(
                f"{name.text}() takes {expected} argument{plural}, not {len(arguments)}", name.position
            )

    def _function(self, name: _Token, arguments: list[_Node]) -> _Node:
        if name.text == "size":
            self._arity(name, arguments, 1)
            return _Size(arguments[0], name.position)
        if name.text == "timestamp":
            self._arity(name, arguments, 1)
            argument = arguments[0]
            if isinstance(argument, _Constant) and isinstance(argument.value, str):
                moment = _parse_rfc3339(argument.value)
                if moment is None:
                    raise self._error(
                        f"{_excerpt(argument.value)} is not an RFC 3339 timestamp "
                        '(such as "2024-05-01T12:00:00Z")',
                        argument.position,
                    )
                return _TimestampLiteral(moment, name.position)
            if isinstance(argument, _Now):
                return argument
            return _AsTimestamp(argument, name.position)
        if name.text == "matches":
            raise self._error("regular expressions (matches) are not supported", name.position)
        if name.text in (*_STRING_TESTS, "add", "subtract"):
            raise self._error(f"{name.text}() is a method: write x.{name.text}(...)", name.position)
        raise self._error(f"unknown function {name.text!r}", name.position)

    def _method(self, receiver: _Node, name: _Token, arguments: list[_Node]) -> _Node:
        method = name.text
        if method == "size":
            self._arity(name, arguments, 0)
            return _Size(receiver, name.position)
        if method in _STRING_TESTS:
            self._arity(name, arguments, 1)
            return _StringTest(_STRING_TESTS[method], receiver, arguments[0], name.position)
        if method in ("add", "subtract"):
            self._arity(name, arguments, 1)
            delta = self._duration(arguments[0])
            return _Shift(receiver, -delta if method == "subtract" else delta, name.position)
        if method == "matches":
            raise self._error("regular expressions (matches) are not supported", name.position)
        raise self._error(f"unknown method {method!r}", name.position)

    def _duration(self, argument: _Node) -> timedelta:
        if not (isinstance(argument, _Constant) and isinstance(argument.value, str)):
            raise self._error('the duration must be a string literal such as "24h"', argument.position)
        try:
            delta = _parse_duration(argument.value)
        except OverflowError:
            raise self._error(f"duration {_excerpt(argument.value)} is too long", argument.position) from None
        if delta is None:
            raise self._error(
                f"invalid duration {_excerpt(argument.value)}: use whole numbers with units "
                'd, h, m, s, ms or us, such as "7d" or "1h30m"',
                argument.position,
            )
        return delta


# --- Type checker --------------------------------------------------------------------------------


class _Kind(Enum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    NULL = "null"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class _ListOf:
    element: _Kind | None  # None for the empty literal [], which fits any list


_Type: TypeAlias = _Kind | _ListOf

_FIELD_TYPES: Final[dict[ValueKind, _Type]] = {
    ValueKind.STRING: _Kind.STRING,
    ValueKind.BOOLEAN: _Kind.BOOL,
    ValueKind.TIMESTAMP: _Kind.TIMESTAMP,
    ValueKind.STRING_LIST: _ListOf(_Kind.STRING),
}
# The kinds a filter can read; other fields (references, maps) are not filterable.
FILTERABLE_KINDS: Final = frozenset(_FIELD_TYPES)
_ORDERED_KINDS: Final = frozenset({_Kind.STRING, _Kind.INT, _Kind.BOOL, _Kind.TIMESTAMP})


def _name(kind: _Type) -> str:
    if isinstance(kind, _ListOf):
        return "an empty list" if kind.element is None else f"a list of {kind.element.value}s"
    return {_Kind.INT: "an int", _Kind.NULL: "null"}.get(kind, f"a {kind.value}")


def _fits(left: _Kind, right: _Kind) -> bool:
    return left == right or _Kind.NULL in (left, right)


def _is_empty_string(node: _Node) -> bool:
    return isinstance(node, _Constant) and node.value == ""


class _Checker:
    def __init__(self, text: str) -> None:
        self._text = text

    def _error(self, reason: str, position: int) -> FilterError:
        return FilterError(reason, position, self._text)

    def _require(self, node: _Node, depth: int, wanted: _Kind, what: str) -> None:
        found = self.check(node, depth)
        if found != wanted:
            raise self._error(f"{what} needs {_name(wanted)}, not {_name(found)}", node.position)

    def check(self, node: _Node, depth: int = 1) -> _Type:
        if depth > MAX_DEPTH:
            raise self._error(f"the filter is nested more than {MAX_DEPTH} levels deep", node.position)
        inner = depth + 1
        if isinstance(node, _Constant):
            value = node.value
            if value is None:
                return _Kind.NULL
            if isinstance(value, bool):
                return _Kind.BOOL
            return _Kind.INT if isinstance(value, int) else _Kind.STRING
        if isinstance(node, _Field):
            return _FIELD_TYPES[node.kind]
        if isinstance(node, _Now | _TimestampLiteral):
            return _Kind.TIMESTAMP
        if isinstance(node, _AsTimestamp):
            found = self.check(node.operand, inner)
            if found != _Kind.TIMESTAMP:
                raise self._error(
                    f"timestamp() takes an RFC 3339 string literal or time.now, not {_name(found)}",
                    node.operand.position,
                )
            return _Kind.TIMESTAMP
        if isinstance(node, _ListLiteral):
            return self._list(node, inner)
        if isinstance(node, _Not):
            self._require(node.operand, inner, _Kind.BOOL, "'!'")
            return _Kind.BOOL
        if isinstance(node, _Logical):
            for operand in node.operands:
                self._require(operand, inner, _Kind.BOOL, f"'{node.operator}'")
            return _Kind.BOOL
        if isinstance(node, _Compare):
            self._compare(node, self.check(node.left, inner), self.check(node.right, inner))
            return _Kind.BOOL
        if isinstance(node, _Size):
            found = self.check(node.operand, inner)
            if found != _Kind.STRING and not isinstance(found, _ListOf):
                raise self._error(f"size() needs a string or a list, not {_name(found)}", node.position)
            return _Kind.INT
        if isinstance(node, _StringTest):
            self._require(node.receiver, inner, _Kind.STRING, f"{node.method}()")
            self._require(node.argument, inner, _Kind.STRING, f"the argument of {node.method}()")
            return _Kind.BOOL
        self._require(node.receiver, inner, _Kind.TIMESTAMP, "add() and subtract()")
        return _Kind.TIMESTAMP

    def _list(self, node: _ListLiteral, depth: int) -> _Type:
        element: _Kind | None = None
        saw_null = False
        for item in node.items:
            found = self.check(item, depth)
            if isinstance(found, _ListOf):
                raise self._error("lists of lists are not supported", item.position)
            if found == _Kind.NULL:
                saw_null = True
            elif element is None:
                element = found
            elif found != element:
                raise self._error(f"a list cannot mix {_name(element)} and {_name(found)}", item.position)
        return _ListOf(element if element is not None or not saw_null else _Kind.NULL)

    def _compare(self, node: _Compare, left: _Type, right: _Type) -> None:
        symbol = node.operator
        if symbol == "in":
            if not isinstance(right, _ListOf):
                raise self._error(f"the right side of 'in' must be a list, not {_name(right)}", node.position)
            if isinstance(left, _ListOf):
                raise self._error("'in' looks for one value in a list, not a list", node.position)
            if right.element is None or _fits(left, right.element):
                return
            raise self._error(f"cannot look for {_name(left)} in {_name(right)}", node.position)
        if symbol in ("==", "!="):
            if _Kind.NULL in (left, right):
                return
            if isinstance(left, _ListOf) and isinstance(right, _ListOf):
                if left.element is None or right.element is None or _fits(left.element, right.element):
                    return
            elif isinstance(left, _ListOf) or isinstance(right, _ListOf):
                # Emptiness check: a list equals "" when it is empty (see the module docstring).
                other_node, other = (node.right, right) if isinstance(left, _ListOf) else (node.left, left)
                if _is_empty_string(other_node):
                    return
                if other == _Kind.STRING:
                    raise self._error(
                        'a list can be compared with a string only to test emptiness (== "")', node.position
                    )
                raise self._error(
                    f'a list can be compared only with null, "" or a list, not {_name(other)}', node.position
                )
            elif left == right:
                return
        elif left == right and left in _ORDERED_KINDS:
            return
        hint = ""
        if {left, right} == {_Kind.TIMESTAMP, _Kind.STRING}:
            hint = ' (write the time as timestamp("..."))'
        raise self._error(
            f"cannot compare {_name(left)} with {_name(right)} using '{symbol}'{hint}", node.position
        )


# --- Evaluator -----------------------------------------------------------------------------------


class _Undefined:
    """The result of an operation that could not be carried out on this object."""

    def __repr__(self) -> str:
        return "<undefined>"


_UNDEFINED: Final = _Undefined()

_Value: TypeAlias = "str | int | bool | datetime | tuple[_Value, ...] | _Undefined | None"


def _read_field(kind: ValueKind, raw: object) -> _Value:
    """The value of a field as the filter sees it; values of the wrong type are undefined."""
    if kind is ValueKind.STRING:
        if raw is None:
            return ""
        return raw if isinstance(raw, str) else _UNDEFINED
    if kind is ValueKind.STRING_LIST:
        if raw is None:
            return ()
        if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        return _UNDEFINED
    if kind is ValueKind.BOOLEAN:
        return raw if raw is None or isinstance(raw, bool) else _UNDEFINED
    if raw is None:
        return None
    if isinstance(raw, datetime):
        try:
            return _as_utc(raw)
        except OverflowError:
            return _UNDEFINED
    if isinstance(raw, str):
        moment = _parse_rfc3339(raw)
        return _UNDEFINED if moment is None else moment
    return _UNDEFINED


def _is_empty(value: _Value) -> bool:
    return value is None or (isinstance(value, str | tuple) and len(value) == 0)


def _equal(left: _Value, right: _Value) -> bool:
    """Equality of two defined values; null equals anything empty."""
    if left is None or right is None:
        return _is_empty(left) and _is_empty(right)
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, tuple) or isinstance(right, tuple):
        return _is_empty(left) and _is_empty(right)  # a list against "" (the checker allows no more)
    return type(left) is type(right) and left == right


def _compare(symbol: str, left: _Value, right: _Value) -> _Value:
    if isinstance(left, _Undefined) or isinstance(right, _Undefined):
        return _UNDEFINED
    if symbol == "==":
        return _equal(left, right)
    if symbol == "!=":
        return not _equal(left, right)
    if symbol == "in":
        return any(_equal(left, item) for item in right) if isinstance(right, tuple) else _UNDEFINED
    if isinstance(left, str | int | datetime) and type(left) is type(right):
        return _ORDERINGS[symbol](left, right)
    return _UNDEFINED  # a null timestamp or boolean


def _evaluate(node: _Node, obj: Mapping[str, object], now: datetime) -> _Value:
    if isinstance(node, _Constant):
        return node.value
    if isinstance(node, _Field):
        return _read_field(node.kind, obj.get(node.name))
    if isinstance(node, _ListLiteral):
        items = tuple(_evaluate(item, obj, now) for item in node.items)
        return _UNDEFINED if any(isinstance(item, _Undefined) for item in items) else items
    if isinstance(node, _Now):
        return now
    if isinstance(node, _TimestampLiteral):
        return node.value
    if isinstance(node, _AsTimestamp):
        return _evaluate(node.operand, obj, now)
    if isinstance(node, _Not):
        value = _evaluate(node.operand, obj, now)
        return (not value) if isinstance(value, bool) else _UNDEFINED
    if isinstance(node, _Logical):
        # CEL's commutative short-circuit: the deciding value wins even over an undefined operand.
        deciding = node.operator == "||"
        undefined = False
        for operand in node.operands:
            value = _evaluate(operand, obj, now)
            if value is deciding:
                return deciding
            undefined = undefined or not isinstance(value, bool)
        return _UNDEFINED if undefined else not deciding
    if isinstance(node, _Compare):
        return _compare(node.operator, _evaluate(node.left, obj, now), _evaluate(node.right, obj, now))
    if isinstance(node, _Size):
        value = _evaluate(node.operand, obj, now)
        return len(value) if isinstance(value, str | tuple) else _UNDEFINED
    if isinstance(node, _StringTest):
        receiver = _evaluate(node.receiver, obj, now)
        argument = _evaluate(node.argument, obj, now)
        if not (isinstance(receiver, str) and isinstance(argument, str)):
            return _UNDEFINED
        if node.method == "startsWith":
            return receiver.startswith(argument)
        if node.method == "endsWith":
            return receiver.endswith(argument)
        return argument in receiver
    moment = _evaluate(node.receiver, obj, now)
    if not isinstance(moment, datetime):
        return _UNDEFINED
    try:
        return moment + node.delta
    except OverflowError:
        return _UNDEFINED


# --- Public API ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """A compiled filter expression; make one with :func:`compile_filter`."""

    expression: str
    _root: _Node = field(repr=False)

    @property
    def root(self) -> _Node:
        """The checked syntax tree (burrow.store.filter_sql compiles it to SQL)."""
        return self._root

    def matches(self, obj: Mapping[str, object], now: datetime | None = None) -> bool:
        """Whether ``obj`` (a resource's fields by name) satisfies the filter.

        ``now`` is what ``time.now`` means (naive means UTC; default: the current time); pass
        the same value for every object of one request so that they are judged alike.
        """
        moment = datetime.now(UTC) if now is None else _as_utc(now)
        return _evaluate(self._root, obj, moment) is True


def compile_filter(expression: str, fields: Mapping[str, ValueKind]) -> Filter:
    """Parse and type-check ``expression`` against the fields ``obj`` has; raises FilterError."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_EXPRESSION_LENGTH} characters")
    kinds = {name: ValueKind(kind) for name, kind in fields.items()}
    unreadable = sorted(name for name, kind in kinds.items() if kind not in FILTERABLE_KINDS)
    if unreadable:
        raise ValueError(f"fields of these kinds cannot be filtered on: {unreadable}")
    root = _Parser(expression, kinds).parse()
    result = _Checker(expression).check(root)
    if result != _Kind.BOOL:
        raise FilterError(f"the filter must be a condition, not {_name(result)}", root.position, expression)
    return Filter(expression, root)
