"""The CEL of traffic policies: expressions compiled and type-checked once, against typed variables.

It shares the lexer, the literal grammar and :class:`~burrow.domain.filter.FilterError` with the
API's list filters (``burrow.domain.filter``), but has its own parser and semantics: the filters'
"null equals empty" rule and their SQL translation do not belong here, and policies need what
filters refuse (the ternary operator, indexing, maps, ``matches``, ``has``). A compiled
expression is a tree of closures, each already checked for its type, so evaluating one does no
type dispatch and cannot meet a type error; what can still fail at run time (a missing map key,
an index out of range, a variable the caller did not supply) raises :class:`EvaluationError`,
which CEL's commutative ``&&``/``||`` absorb when the other side decides.

Supported: string, int, bool, null literals; list literals; ``! && || ?:``; ``== != < <= > >=``
(same types only, as CEL's checker demands), ``in`` (lists and map keys); ``x[i]`` on lists and
maps, ``m.key`` on maps; ``size``; ``startsWith``, ``endsWith``, ``contains``, ``matches``
(RE2, so linear time; the pattern must be a literal); ``has(m.key)``; ngrok's macros
``inCidrRange(ip, "cidr")`` and ``inCidrRanges(ip, ["cidr", ...])``. Not supported, refused
when compiled: arithmetic, floats, bytes, map literals, comprehensions, timestamps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from ..filter import MAX_DEPTH, MAX_EXPRESSION_LENGTH, FilterError, _describe_token, _excerpt, _Lexer, _Token
from ..ip_restriction import IPNetwork, parse_cidr, unmapped
from .regex import Regex, compile_regex

Value: TypeAlias = "str | int | bool | tuple[Value, ...] | Mapping[str, Value] | None"
Env: TypeAlias = Mapping[str, Value]
"""The variables by dotted name (``"req.method"``, ``"vars.user"``), as the caller knows them."""


class EvaluationError(Exception):
    """An expression that could not be evaluated on these variables (CEL's runtime error)."""


@dataclass(frozen=True)
class CelType:
    kind: str  # string, int, bool, null, list, map
    item: CelType | None = None  # a list's elements, a map's values (None: the empty list)

    def __str__(self) -> str:
        if self.kind == "list":
            return "list(?)" if self.item is None else f"list({self.item})"
        if self.kind == "map":
            return f"map(string, {self.item})"
        return self.kind


STRING: Final = CelType("string")
INT: Final = CelType("int")
BOOL: Final = CelType("bool")
NULL: Final = CelType("null")
STRINGS: Final = CelType("list", STRING)
MULTIMAP: Final = CelType("map", STRINGS)  # headers and query parameters
_SCALARS: Final = frozenset({STRING, INT, BOOL})


def list_of(item: CelType | None) -> CelType:
    return CelType("list", item)


_Run: TypeAlias = Callable[[Env], Value]


class _NotConstant:
    pass


_NOT_CONSTANT: Final = _NotConstant()


@dataclass(frozen=True)
class _Typed:
    type: CelType
    run: _Run
    position: int
    constant: Value | _NotConstant = _NOT_CONSTANT
    selected: tuple[_Typed, str] | None = None  # for has(): the map and the key of ``m.key``


@dataclass(frozen=True)
class Expression:
    """A compiled expression; :meth:`evaluate` runs it on the variables."""

    text: str
    type: CelType
    _run: _Run
    reads: frozenset[str] = frozenset()  # the variables it reads, so a caller builds only those

    def evaluate(self, env: Env) -> Value:
        """The value, or :class:`EvaluationError`."""
        return self._run(env)


def compile_expression(
    text: str, variables: Mapping[str, CelType], want: CelType | None = None
) -> Expression:
    """Parse and check ``text`` over ``variables``; ``want`` is the type it must have (bool for rules)."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise FilterError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    parser = _Parser(text, variables)
    typed = parser.parse()
    if want is not None and typed.type != want:
        raise FilterError(f"the expression must be {want}, not {typed.type}", 0, text)
    return Expression(text, typed.type, typed.run, frozenset(parser.reads))


# --- Run-time helpers ------------------------------------------------------------------------------


def _read(env: Env, name: str) -> Value:
    if name not in env:
        raise EvaluationError(f"{name} is not set")
    return env[name]


def _logical(deciding: bool, runs: list[_Run]) -> _Run:
    def run(env: Env) -> Value:
        failed: EvaluationError | None = None
        for operand in runs:
            try:
                if operand(env) is deciding:
                    return deciding
            except EvaluationError as error:
                failed = failed or error
        if failed is not None:
            raise failed
        return not deciding

    return run


def _index(container: Value, key: Value) -> Value:
    if isinstance(container, tuple) and isinstance(key, int) and not isinstance(key, bool):
        if 0 <= key < len(container):
            return container[key]
        raise EvaluationError(f"index {key} out of range")
    if isinstance(container, Mapping) and isinstance(key, str):
        if key in container:
            return container[key]
        raise EvaluationError(f"no such key {key!r}")
    raise EvaluationError("cannot index this value")


def _ip(value: Value) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return unmapped(ipaddress.ip_address(str(value)))
    except ValueError:
        raise EvaluationError(f"{value!r} is not an IP address") from None


# --- Parser and checker ------------------------------------------------------------------------------

_NAMESPACES: Final = frozenset({"conn", "req", "res", "endpoint", "vars", "time"})
_RELATIONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})
_ORDERED: Final = frozenset({STRING, INT, BOOL})
_ORDER: Final[dict[str, Callable[[Value, Value], bool]]] = {
    "<": lambda a, b: a < b,  # type: ignore[operator]
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


def _equal(left: Value, right: Value) -> bool:
    # bool is an int in Python; CEL keeps them apart (the checker already did, this is for lists).
    return type(left) is type(right) and left == right


class _Parser:
    def __init__(self, text: str, variables: Mapping[str, CelType]) -> None:
        self._text = text
        self._variables = variables
        self._prefixes = {name.rsplit(".", n)[0] for name in variables for n in range(name.count(".") + 1)}
        self._tokens = _Lexer(text, frozenset("?:")).tokens()
        self._index = 0
        self._nesting = 0
        self.reads: set[str] = set()

    def parse(self) -> _Typed:
        if self._peek().kind == "end":
            raise FilterError("the expression is empty")
        root = self._conditional()
        if self._peek().kind != "end":
            raise self._unexpected("an operator or the end of the expression")
        return root

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

    def _expect(self, symbol: str) -> _Token:
        if not self._at(symbol):
            raise self._unexpected(repr(symbol))
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
                raise self._error(f"the expression is nested more than {MAX_DEPTH} levels deep", position)
            yield
        finally:
            self._nesting -= 1

    def _require(self, node: _Typed, wanted: CelType, what: str) -> None:
        if node.type != wanted:
            raise self._error(f"{what} needs {wanted}, not {node.type}", node.position)

    # Grammar, loosest first.

    def _conditional(self) -> _Typed:
        condition = self._or()
        token = self._peek()
        if not self._accept("?"):
            return condition
        with self._nested(token.position):
            self._require(condition, BOOL, "the condition of '?:'")
            then = self._or()
            self._expect(":")
            otherwise = self._conditional()
        if then.type != otherwise.type and NULL not in (then.type, otherwise.type):
            raise self._error(
                f"the branches of '?:' differ: {then.type} and {otherwise.type}", token.position
            )
        test, yes, no = condition.run, then.run, otherwise.run
        return _Typed(
            then.type if then.type != NULL else otherwise.type,
            lambda env: yes(env) if test(env) else no(env),
            condition.position,
        )

    def _or(self) -> _Typed:
        return self._logical("||", self._and)

    def _and(self) -> _Typed:
        return self._logical("&&", self._relation)

    def _logical(self, symbol: str, operand: Callable[[], _Typed]) -> _Typed:
        operands = [operand()]
        while self._accept(symbol):
            operands.append(operand())
        if len(operands) == 1:
            return operands[0]
        for node in operands:
            self._require(node, BOOL, f"'{symbol}'")
        return _Typed(BOOL, _logical(symbol == "||", [node.run for node in operands]), operands[0].position)

    def _chained(self, links: int, position: int) -> None:
        # A chain (a == b == c, x[0][0], s.size()...) nests its closures as deeply as it is long.
        if links > MAX_DEPTH:
            raise self._error(f"the expression chains more than {MAX_DEPTH} operations", position)

    def _relation(self) -> _Typed:
        node = self._unary()
        links = 0
        while True:
            token = self._peek()
            if not (
                (token.kind == "symbol" and token.text in _RELATIONS)
                or (token.kind == "name" and token.text == "in")
            ):
                return node
            self._advance()
            links += 1
            self._chained(links, token.position)
            node = self._compare(token, node, self._unary())

    def _compare(self, token: _Token, left: _Typed, right: _Typed) -> _Typed:
        symbol, a, b = token.text, left.run, right.run
        if symbol == "in":
            if right.type.kind == "list" and (right.type.item is None or right.type.item == left.type):
                return _Typed(BOOL, lambda env: any(_equal(a(env), item) for item in b(env)), left.position)  # type: ignore[union-attr]
            if right.type.kind == "map" and left.type == STRING:
                return _Typed(BOOL, lambda env: a(env) in b(env), left.position)  # type: ignore[operator]
            raise self._error(f"cannot look for {left.type} in {right.type}", token.position)
        if symbol in ("==", "!="):
            same = left.type == right.type or (
                left.type.kind == right.type.kind == "list" and None in (left.type.item, right.type.item)
            )
            if not same or left.type.kind == "map":
                raise self._error(
                    f"cannot compare {left.type} with {right.type} using '{symbol}'", token.position
                )
            if symbol == "==":
                return _Typed(BOOL, lambda env: _equal(a(env), b(env)), left.position)
            return _Typed(BOOL, lambda env: not _equal(a(env), b(env)), left.position)
        if left.type != right.type or left.type not in _ORDERED:
            raise self._error(
                f"cannot compare {left.type} with {right.type} using '{symbol}'", token.position
            )
        order = _ORDER[symbol]
        return _Typed(BOOL, lambda env: order(a(env), b(env)), left.position)

    def _unary(self) -> _Typed:
        token = self._peek()
        if not self._accept("!"):
            return self._member()
        with self._nested(token.position):
            operand = self._unary()
        self._require(operand, BOOL, "'!'")
        run = operand.run
        return _Typed(BOOL, lambda env: not run(env), token.position)

    def _member(self) -> _Typed:
        node = self._primary()
        links = 0
        while True:
            token = self._peek()
            if self._at(".") or self._at("["):
                links += 1
                self._chained(links, token.position)
            if self._accept("."):
                name = self._advance()
                if name.kind != "name":
                    raise self._error(
                        f"expected a name after '.', found {_describe_token(name)}", name.position
                    )
                if self._at("("):
                    node = self._method(node, name, self._arguments())
                elif node.type.kind == "map":
                    node = self._select(node, name.text, name.position)
                else:
                    raise self._error(f"{node.type} has no field {name.text!r}", name.position)
            elif self._accept("["):
                with self._nested(token.position):
                    key = self._conditional()
                    self._expect("]")
                node = self._subscript(node, key, token.position)
            else:
                return node

    def _select(self, container: _Typed, key: str, position: int) -> _Typed:
        run = container.run
        return _Typed(
            container.type.item or NULL,
            lambda env: _index(run(env), key),
            position,
            selected=(container, key),
        )

    def _subscript(self, container: _Typed, key: _Typed, position: int) -> _Typed:
        wanted = {"list": INT, "map": STRING}.get(container.type.kind)
        if wanted is None:
            raise self._error(f"{container.type} cannot be indexed", position)
        self._require(key, wanted, f"an index into {container.type}")
        run, index = container.run, key.run
        return _Typed(container.type.item or NULL, lambda env: _index(run(env), index(env)), position)

    def _primary(self) -> _Typed:
        token = self._advance()
        if token.kind == "int":
            assert isinstance(token.value, int)
            return self._constant(INT, token.value, token.position)
        if token.kind == "string":
            assert isinstance(token.value, str)
            return self._constant(STRING, token.value, token.position)
        if token.kind == "symbol" and token.text == "(":
            with self._nested(token.position):
                node = self._conditional()
                self._expect(")")
            return node
        if token.kind == "symbol" and token.text == "[":
            return self._list(token)
        if token.kind == "name":
            return self._named(token)
        raise self._error(f"expected a value, found {_describe_token(token)}", token.position)

    def _constant(self, kind: CelType, value: Value, position: int) -> _Typed:
        return _Typed(kind, lambda env: value, position, constant=value)

    def _named(self, token: _Token) -> _Typed:
        name = token.text
        if name in ("true", "false"):
            return self._constant(BOOL, name == "true", token.position)
        if name == "null":
            return self._constant(NULL, None, token.position)
        if name in _NAMESPACES:
            return self._variable(token)
        if self._at("("):
            return self._function(token, self._arguments())
        raise self._error(f"unknown name {name!r}", token.position)

    def _variable(self, first: _Token) -> _Typed:
        # The longest dotted name that is a variable: req.url.path, but req.url then .contains(..).
        dotted = first.text
        while self._selects_name(0):
            candidate = f"{dotted}.{self._tokens[self._index + 1].text}"
            if candidate not in self._prefixes:
                break
            self._index += 2
            dotted = candidate
        kind = self._variables.get(dotted)
        if kind is None:
            shown, ahead = dotted, 0
            while self._selects_name(ahead):
                shown, ahead = f"{shown}.{self._tokens[self._index + ahead + 1].text}", ahead + 2
            raise self._error(
                f"unknown variable {shown} (Burrow does not know it, or not in this phase)", first.position
            )
        self.reads.add(dotted)
        return _Typed(kind, lambda env: _read(env, dotted), first.position)

    def _selects_name(self, ahead: int) -> bool:
        """Do the tokens ``ahead`` of here read ``.name`` not followed by ``(``?"""
        dot, name, following = (
            self._tokens[self._index + ahead : self._index + ahead + 3] + [self._tokens[-1]] * 3
        )[:3]
        return (
            dot.kind == "symbol"
            and dot.text == "."
            and name.kind == "name"
            and not (following.kind == "symbol" and following.text == "(")
        )

    def _list(self, opening: _Token) -> _Typed:
        items: list[_Typed] = []
        with self._nested(opening.position):
            while not self._accept("]"):
                items.append(self._conditional())
                if not self._accept(","):
                    self._expect("]")
                    break
        item_type: CelType | None = None
        for item in items:
            if item.type not in _SCALARS:
                raise self._error(
                    f"a list literal holds strings, ints or bools, not {item.type}", item.position
                )
            if item_type is not None and item.type != item_type:
                raise self._error(f"a list cannot mix {item_type} and {item.type}", item.position)
            item_type = item.type
        runs = [item.run for item in items]
        constant: Value | _NotConstant = _NOT_CONSTANT
        if all(not isinstance(item.constant, _NotConstant) for item in items):
            constant = tuple(item.constant for item in items)  # type: ignore[misc]
        return _Typed(
            list_of(item_type), lambda env: tuple(run(env) for run in runs), opening.position, constant
        )

    def _arguments(self) -> list[_Typed]:
        opening = self._expect("(")
        arguments: list[_Typed] = []
        with self._nested(opening.position):
            if self._accept(")"):
                return arguments
            while True:
                arguments.append(self._conditional())
                if self._accept(")"):
                    return arguments
                self._expect(",")

    def _arity(self, name: _Token, arguments: list[_Typed], expected: int) -> None:
        if len(arguments) != expected:
            raise self._error(
                f"{name.text}() takes {expected} argument(s), not {len(arguments)}", name.position
            )

    def _size(self, operand: _Typed, position: int) -> _Typed:
        if operand.type != STRING and operand.type.kind not in ("list", "map"):
            raise self._error(f"size() needs a string, a list or a map, not {operand.type}", position)
        run = operand.run
        return _Typed(INT, lambda env: len(run(env)), position)  # type: ignore[arg-type]

    def _function(self, name: _Token, arguments: list[_Typed]) -> _Typed:
        if name.text == "size":
            self._arity(name, arguments, 1)
            return self._size(arguments[0], name.position)
        if name.text == "has":
            self._arity(name, arguments, 1)
            selected = arguments[0].selected
            if selected is None:
                raise self._error("has() takes a field selection such as has(req.headers.x)", name.position)
            container, key = selected[0].run, selected[1]
            return _Typed(BOOL, lambda env: key in container(env), name.position)  # type: ignore[operator]
        if name.text in ("inCidrRange", "inCidrRanges"):
            self._arity(name, arguments, 2)
            address, ranges = arguments
            self._require(address, STRING, f"the first argument of {name.text}()")
            networks = self._cidrs(ranges, single=name.text == "inCidrRange")
            run = address.run
            return _Typed(
                BOOL, lambda env: any(_ip(run(env)) in network for network in networks), name.position
            )
        if name.text == "matches":
            self._arity(name, arguments, 2)
            return self._matches(arguments[0], arguments[1], name.position)
        raise self._error(f"unknown function {name.text!r}", name.position)

    def _cidrs(self, ranges: _Typed, single: bool) -> tuple[IPNetwork, ...]:
        texts = (ranges.constant,) if single else ranges.constant
        if not isinstance(texts, tuple) or not all(isinstance(text, str) for text in texts):
            shape = "a string literal" if single else "a list literal of strings"
            raise self._error(f"the CIDR ranges must be {shape}", ranges.position)
        try:
            return tuple(parse_cidr(text) for text in texts)
        except Exception:  # BurrowError from parse_cidr; reported here as an expression error
            raise self._error(f"invalid CIDR in {_excerpt(str(texts))}", ranges.position) from None

    def _matches(self, subject: _Typed, pattern: _Typed, position: int) -> _Typed:
        self._require(subject, STRING, "matches()")
        if not isinstance(pattern.constant, str):
            raise self._error("the pattern of matches() must be a string literal", pattern.position)
        try:
            regex: Regex = compile_regex(pattern.constant)
        except ValueError as error:
            raise self._error(f"invalid regular expression: {error}", pattern.position) from None
        run = subject.run
        return _Typed(BOOL, lambda env: regex.search(run(env)) is not None, position)  # type: ignore[arg-type]

    def _method(self, receiver: _Typed, name: _Token, arguments: list[_Typed]) -> _Typed:
        method = name.text
        if method == "size":
            self._arity(name, arguments, 0)
            return self._size(receiver, name.position)
        if method == "matches":
            self._arity(name, arguments, 1)
            return self._matches(receiver, arguments[0], name.position)
        tests: dict[str, Callable[[str, str], bool]] = {
            "startsWith": str.startswith,
            "endsWith": str.endswith,
            "contains": lambda text, part: part in text,
        }
        if method not in tests:
            raise self._error(f"unknown method {method!r}", name.position)
        self._arity(name, arguments, 1)
        self._require(receiver, STRING, f"{method}()")
        self._require(arguments[0], STRING, f"the argument of {method}()")
        test, subject, argument = tests[method], receiver.run, arguments[0].run
        return _Typed(BOOL, lambda env: test(subject(env), argument(env)), name.position)  # type: ignore[arg-type]


# --- Interpolation ---------------------------------------------------------------------------------


def render(value: Value) -> str:
    """A value as interpolation writes it into a string (CEL's string() conversion)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ", ".join(render(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {render(item)}" for key, item in value.items()) + "}"
    return str(value)


@dataclass(frozen=True)
class Template:
    """A config string with ``${expr}`` parts, compiled; :meth:`resolve` fills them in."""

    parts: tuple[str | Expression, ...]
    # Whether any part is an expression (else resolving it changes nothing); set once.
    dynamic: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dynamic", any(isinstance(part, Expression) for part in self.parts))

    @classmethod
    def literal(cls, text: str) -> Template:
        return cls((text,) if text else ())

    @property
    def text(self) -> str:
        """The string, once resolved (or when it never had expressions)."""
        if self.dynamic:
            raise ValueError("the template has not been resolved")
        return "".join(self.parts)  # type: ignore[arg-type]

    def resolve(self, env: Env) -> Template:
        if not self.dynamic:
            return self
        text = "".join([part if isinstance(part, str) else render(part.evaluate(env)) for part in self.parts])
        resolved = object.__new__(Template)  # a literal, made without __init__'s scan (per request)
        object.__setattr__(resolved, "parts", (text,) if text else ())
        object.__setattr__(resolved, "dynamic", False)
        return resolved


def compile_template(text: str, variables: Mapping[str, CelType]) -> Template:
    """``text`` with each ``${expr}`` compiled; ``$`` not followed by ``{`` stays as it is."""
    parts: list[str | Expression] = []
    position = 0
    while (start := text.find("${", position)) != -1:
        end = _closing_brace(text, start + 2)
        if end is None:
            raise FilterError("unterminated ${ in the string", start, text)
        if start > position:
            parts.append(text[position:start])
        parts.append(compile_expression(text[start + 2 : end], variables))
        position = end + 1
    if position < len(text):
        parts.append(text[position:])
    return Template(tuple(parts))


def _closing_brace(text: str, index: int) -> int | None:
    quote: str | None = None
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "}":
            return index
        index += 1
    return None
