"""List filters as SQL: the parts of a CEL filter (burrow.domain.filter) the database can answer.

:func:`split_filter` turns a checked filter into a SQL condition (SQLAlchemy Core) and a
residual :class:`~burrow.domain.filter.Filter` for what SQL cannot express exactly. A
top-level ``&&`` is split conjunct by conjunct, so ``obj.id in [...] && obj.acl.size() > 2``
sends the ``in`` to SQL and checks only the rows it keeps in Python. The SQL condition is
exact, never an approximation: an item matches iff the SQL condition holds and the
residual (when there is one) matches its JSON.

Exactness rests on the columns it is given being NOT NULL and holding what the JSON shows
(strings as served, booleans, naive-UTC timestamps with whole seconds), so that no compiled
comparison can be undefined in CEL's sense; anything that could be (an ordering with null,
a timestamp shifted out of range) stays in the residual. Subtrees without fields are
evaluated once here, at the request's ``now``.

Compiled: ``! && ||``, ``== !=``, ``in`` against a list of constants (or a constant against a
list of fields), orderings of timestamps and booleans; on SQLite also orderings of strings
(its BINARY collation orders UTF-8 bytes, which is code point order, as CEL's),
``startsWith`` (as a range, so the index on ``id`` serves it) and ``contains`` (``instr``).
A list field (the JSON text of ``acl``) compiles only for emptiness and equality with a list
literal. ``size()``, ``endsWith``, and shifts of fields are left to the residual.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, false, func, literal, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from burrow.domain.fields import ValueKind

# The node classes are private to the filter module: this is its one other reader.
from burrow.domain.filter import (
    Filter,
    _AsTimestamp,
    _Compare,
    _equal,
    _evaluate,
    _Field,
    _ListLiteral,
    _Logical,
    _Node,
    _Not,
    _Shift,
    _Size,
    _StringTest,
    _Undefined,
)


@dataclass(frozen=True)
class Column:
    """A filter field stored in a column: its SQL expression and the kind the JSON shows."""

    sql: ColumnElement[Any]
    kind: ValueKind


@dataclass(frozen=True)
class SplitFilter:
    condition: ColumnElement[bool]  # what SQL decides; ``true()`` when nothing compiled
    residual: Filter | None  # what Python must still check on each row's JSON; None if nothing
    compiled_all: bool


class _NotCompilable(Exception):
    pass


@dataclass(frozen=True)
class _Value:
    value: Any  # a defined CEL value: str, int, bool, datetime (UTC), tuple, None


_Operand = _Value | Column
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_MAX_CODE_POINT = 0x10FFFF
_OPERATORS: dict[str, Any] = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _has_field(node: _Node) -> bool:
    if isinstance(node, _Field):
        return True
    if isinstance(node, _ListLiteral):
        return any(_has_field(item) for item in node.items)
    if isinstance(node, _Logical):
        return any(_has_field(operand) for operand in node.operands)
    if isinstance(node, _Compare):
        return _has_field(node.left) or _has_field(node.right)
    if isinstance(node, _StringTest):
        return _has_field(node.receiver) or _has_field(node.argument)
    if isinstance(node, _Not | _Size | _AsTimestamp):
        return _has_field(node.operand)
    if isinstance(node, _Shift):
        return _has_field(node.receiver)
    return False


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


class _Compiler:
    def __init__(self, columns: Mapping[str, Column], now: datetime, dialect: str) -> None:
        self.columns = columns
        self.now = now
        self.sqlite = dialect == "sqlite"

    def constant(self, node: _Node) -> _Value:
        value = _evaluate(node, {}, self.now)
        if isinstance(value, _Undefined):
            raise _NotCompilable
        return _Value(value)

    def operand(self, node: _Node) -> _Operand:
        if not _has_field(node):
            return self.constant(node)
        if isinstance(node, _Field) and node.name in self.columns:
            return self.columns[node.name]
        if isinstance(node, _AsTimestamp):
            return self.operand(node.operand)
        raise _NotCompilable

    def condition(self, node: _Node) -> ColumnElement[bool]:
        if not _has_field(node):
            value = self.constant(node).value
            return true() if value is True else false()
        if isinstance(node, _Not):
            return not_(self.condition(node.operand))
        if isinstance(node, _Logical):
            parts = [self.condition(operand) for operand in node.operands]
            return and_(*parts) if node.operator == "&&" else or_(*parts)
        if isinstance(node, _Field):
            column = self.operand(node)
            assert isinstance(column, Column) and column.kind is ValueKind.BOOLEAN
            return column.sql == true()
        if isinstance(node, _Compare):
            return self.compare(node)
        if isinstance(node, _StringTest):
            return self.string_test(node)
        raise _NotCompilable

    def compare(self, node: _Compare) -> ColumnElement[bool]:
        if node.operator == "in":
            return self.membership(node)
        left, right = self.operand(node.left), self.operand(node.right)
        symbol = node.operator
        if isinstance(left, _Value):
            left, right, symbol = right, left, _FLIPPED[symbol]
        assert isinstance(left, Column)
        if symbol in ("==", "!="):
            equal = self.equal(left, right)
            return equal if symbol == "==" else not_(equal)
        if isinstance(right, Column) or right.value is None:
            raise _NotCompilable  # an ordering with null is undefined; two columns are rare
        if left.kind is ValueKind.TIMESTAMP:
            bound: Any = _naive_utc(right.value)
        elif left.kind is ValueKind.BOOLEAN or (left.kind is ValueKind.STRING and self.sqlite):
            bound = right.value
        else:
            raise _NotCompilable
        ordered: ColumnElement[bool] = _OPERATORS[symbol](left.sql, literal(bound, left.sql.type))
        return ordered

    def equal(self, column: Column, other: _Operand) -> ColumnElement[bool]:
        if isinstance(other, Column):
            if column.kind is other.kind and column.kind is not ValueKind.STRING_LIST:
                return column.sql == other.sql
            raise _NotCompilable
        value = other.value
        kind = column.kind
        if kind is ValueKind.STRING:
            return column.sql == ("" if value is None else value)
        if kind is ValueKind.STRING_LIST:
            if value is None or value == "" or value == ():
                return column.sql == "[]"
            if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
                return column.sql == json.dumps(list(value))  # as the store writes it
            raise _NotCompilable
        if value is None:
            return false()  # booleans and timestamps of stored rows are never null
        if kind is ValueKind.TIMESTAMP:
            return column.sql == _naive_utc(value)
        same: ColumnElement[bool] = column.sql == value
        return same

    def membership(self, node: _Compare) -> ColumnElement[bool]:
        left = self.operand(node.left)
        if isinstance(left, Column):
            right = self.operand(node.right)
            if not isinstance(right, _Value) or left.kind is ValueKind.STRING_LIST:
                raise _NotCompilable
            items: tuple[Any, ...] = right.value
            if left.kind is ValueKind.STRING:
                values = {"" if item is None else item for item in items}
            elif left.kind is ValueKind.TIMESTAMP:
                values = {_naive_utc(item) for item in items if item is not None}
            else:
                values = {item for item in items if item is not None}
            return left.sql.in_(sorted(values)) if values else false()
        if isinstance(node.right, _ListLiteral):
            return or_(false(), *(self.equal_operands(left, item) for item in node.right.items))
        raise _NotCompilable  # a constant in a list field (the JSON text of acl)

    def equal_operands(self, constant: _Value, node: _Node) -> ColumnElement[bool]:
        other = self.operand(node)
        if isinstance(other, _Value):
            return true() if _equal(constant.value, other.value) else false()
        return self.equal(other, constant)

    def string_test(self, node: _StringTest) -> ColumnElement[bool]:
        receiver, argument = self.operand(node.receiver), self.operand(node.argument)
        if not isinstance(receiver, Column) or not isinstance(argument, _Value):
            raise _NotCompilable
        text: str = argument.value
        if node.method == "startsWith" and self.sqlite:  # the range needs code point order
            if text == "":
                return true()
            last = ord(text[-1])
            if last == _MAX_CODE_POINT:
                raise _NotCompilable
            following = last + 1 if last + 1 != 0xD800 else 0xE000  # no surrogates in UTF-8
            # A prefix as a range: exact under code point order, and the index serves it.
            return and_(receiver.sql >= text, receiver.sql < text[:-1] + chr(following))
        if node.method == "contains" and self.sqlite:
            found: ColumnElement[bool] = func.instr(receiver.sql, text) > 0
            return found
        raise _NotCompilable


def split_filter(compiled: Filter, columns: Mapping[str, Column], now: datetime, dialect: str) -> SplitFilter:
    """The SQL ``compiled`` reduces to over ``columns``, and what is left for Python."""
    compiler = _Compiler(columns, now, dialect)
    root = compiled.root
    conjuncts = root.operands if isinstance(root, _Logical) and root.operator == "&&" else (root,)
    in_sql: list[ColumnElement[bool]] = []
    left: list[_Node] = []
    for conjunct in conjuncts:
        try:
            in_sql.append(compiler.condition(conjunct))
        except _NotCompilable:
            left.append(conjunct)
    condition = and_(*in_sql) if in_sql else true()
    if not left:
        return SplitFilter(condition, None, True)
    residual_root = left[0] if len(left) == 1 else _Logical("&&", tuple(left), root.position)
    return SplitFilter(condition, Filter(compiled.expression, residual_root), False)
