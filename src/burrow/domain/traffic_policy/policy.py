"""A traffic policy compiled once (:func:`compile_policy`) and evaluated per phase (:meth:`Policy.run`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from .. import errors
from ..filter import FilterError
from .actions import (
    BUILDERS,
    PHASES,
    REQUEST,
    RESPONSE,
    TCP,
    Action,
    CloseConnection,
    ConfigReader,
    CustomResponse,
    Deny,
    Invalid,
    SetVars,
)
from .document import load_document
from .expressions import (
    BOOL,
    INT,
    MULTIMAP,
    STRING,
    CelType,
    Env,
    EvaluationError,
    Expression,
    Template,
    Value,
    compile_expression,
)

_CONNECTION: Final = {
    "conn.client_ip": STRING,
    "conn.client_port": INT,
    "conn.server_ip": STRING,
    "conn.server_port": INT,
    "endpoint.url": STRING,
    "endpoint.host": STRING,
    "endpoint.port": INT,
    "endpoint.protocol": STRING,
}
_REQUEST: Final = {
    "req.method": STRING,
    "req.url": STRING,
    "req.url.path": STRING,
    "req.url.query": STRING,
    "req.url.host": STRING,
    "req.url.scheme": STRING,
    "req.host": STRING,
    "req.headers": MULTIMAP,
    "req.query_params": MULTIMAP,
    "req.content_length": INT,
}
_RESPONSE: Final = {"res.status_code": INT, "res.headers": MULTIMAP}
VARIABLES: Final[dict[str, dict[str, CelType]]] = {
    TCP: dict(_CONNECTION),
    REQUEST: {**_CONNECTION, **_REQUEST},
    RESPONSE: {**_CONNECTION, **_REQUEST, **_RESPONSE},
}
"""The variables each phase may read, with their types; the edge supplies them by these names
(header and query names in lower case, each with the list of its values)."""

_TERMINAL: Final = (Deny, CustomResponse, CloseConnection)
MAX_RULES: Final = 256
MAX_ACTIONS: Final = 64
_RULE_FIELDS: Final = frozenset({"name", "expressions", "actions"})
_ACTION_FIELDS: Final = frozenset({"type", "config"})


@dataclass(frozen=True)
class Rule:
    name: str
    expressions: tuple[Expression, ...]
    actions: tuple[Action, ...]
    # Per action: its templates' resolver, compiled once (None: it runs as it is).
    resolvers: tuple[Callable[[Env], Action] | None, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolvers", tuple(action.resolver() for action in self.actions))


@dataclass(frozen=True)
class Policy:
    phases: Mapping[str, tuple[Rule, ...]]
    # The variables each phase reads (expressions and interpolations): the caller may leave
    # out the others, and builds the costly ones (headers, query parameters) only if read.
    reads: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def run(self, phase: str, variables: Env) -> list[Action]:
        """The actions to run, in order and resolved, for the rules of ``phase`` that match.

        The list ends at the first deny, custom-response or close-connection.
        ``set-vars`` takes effect at once (later expressions see ``vars.<name>``) and is returned
        too. An expression that cannot be evaluated (a missing header, say) makes its rule not
        match, as in ngrok.
        """
        env: dict[str, Value] = dict(variables)
        planned: list[Action] = []
        for rule in self.phases.get(phase, ()):
            if not all(_holds(expression, env) for expression in rule.expressions):
                continue
            for action, resolver in zip(rule.actions, rule.resolvers, strict=True):
                try:
                    resolved = action if resolver is None else resolver(env)
                except EvaluationError:
                    continue  # an interpolation that cannot be made: the action is skipped
                if isinstance(resolved, SetVars):
                    env.update((f"vars.{name}", value.text) for name, value in resolved.vars)
                planned.append(resolved)
                if isinstance(resolved, _TERMINAL):
                    return planned  # nothing after a response or a close can run
        return planned


def _holds(expression: Expression, env: Env) -> bool:
    try:
        return expression.evaluate(env) is True
    except EvaluationError:
        return False


def compile_policy(text: str | bytes) -> Policy:
    """The compiled policy, or ERR_NGROK_2236 (unparsable) / ERR_NGROK_9026 (invalid)."""
    try:
        return _compile(load_document(text))
    except Invalid as error:
        raise errors.TRAFFIC_POLICY_INVALID(error=str(error)) from None


def _compile(document: object) -> Policy:
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise Invalid("(document)", "expected a mapping of phases")
    for key in document:
        if key not in PHASES:
            raise Invalid(str(key), f"unknown field (phases are {', '.join(PHASES)})")
    phases: dict[str, tuple[Rule, ...]] = {}
    for phase in PHASES:
        rules = document.get(phase) or []
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise Invalid(phase, f"expected a list of at most {MAX_RULES} rules")
        variables = dict(VARIABLES[phase])
        variables.update((f"vars.{name}", STRING) for name in _set_var_names(rules))
        phases[phase] = tuple(
            _rule(f"{phase}[{index}]", rule, phase, variables) for index, rule in enumerate(rules)
        )
    return Policy(phases, {phase: _reads(rules) for phase, rules in phases.items()})


def _reads(rules: tuple[Rule, ...]) -> frozenset[str]:
    names: set[str] = set()
    for rule in rules:
        for expression in rule.expressions:
            names |= expression.reads
        for action in rule.actions:
            names |= _action_reads(action)
    return frozenset(names)


def _action_reads(value: object) -> frozenset[str]:
    if isinstance(value, Template):
        return frozenset().union(*(part.reads for part in value.parts if isinstance(part, Expression)))
    if isinstance(value, tuple):
        return frozenset().union(*(_action_reads(item) for item in value))
    if isinstance(value, Action):
        parts = (getattr(value, item.name) for item in fields(value))  # type: ignore[arg-type]
        return frozenset().union(*(_action_reads(part) for part in parts))
    return frozenset()


def _set_var_names(rules: list[object]) -> set[str]:
    """Every name a set-vars of this phase may define, so that expressions may read vars.<name>."""
    names: set[str] = set()
    for rule in rules:
        for action in rule.get("actions") or [] if isinstance(rule, dict) else []:
            config = action.get("config") if isinstance(action, dict) else None
            if isinstance(action, dict) and action.get("type") == "set-vars" and isinstance(config, dict):
                for item in config.get("vars") or []:
                    if isinstance(item, dict):
                        names.update(str(key) for key in item)
    return names


def _rule(path: str, rule: object, phase: str, variables: Mapping[str, CelType]) -> Rule:
    if not isinstance(rule, dict):
        raise Invalid(path, "expected a mapping with name, expressions and actions")
    for key in rule:
        if key not in _RULE_FIELDS:
            raise Invalid(f"{path}.{key}", "unknown field")
    name = rule.get("name") or ""
    if not isinstance(name, str):
        raise Invalid(f"{path}.name", "expected a string")
    raw_expressions = rule.get("expressions") or []
    if not isinstance(raw_expressions, list):
        raise Invalid(f"{path}.expressions", "expected a list of strings")
    expressions = []
    for index, text in enumerate(raw_expressions):
        where = f"{path}.expressions[{index}]"
        if not isinstance(text, str):
            raise Invalid(where, "expected a string")
        try:
            expressions.append(compile_expression(text, variables, BOOL))
        except FilterError as error:
            raise Invalid(where, str(error)) from None
    raw_actions = rule.get("actions")
    if not isinstance(raw_actions, list) or not raw_actions or len(raw_actions) > MAX_ACTIONS:
        raise Invalid(f"{path}.actions", f"expected a list of 1 to {MAX_ACTIONS} actions")
    actions = tuple(
        _action(f"{path}.actions[{index}]", raw, phase, variables) for index, raw in enumerate(raw_actions)
    )
    return Rule(name, tuple(expressions), actions)


def _action(path: str, raw: object, phase: str, variables: Mapping[str, CelType]) -> Action:
    if not isinstance(raw, dict):
        raise Invalid(path, "expected a mapping with type and config")
    for key in raw:
        if key not in _ACTION_FIELDS:
            raise Invalid(f"{path}.{key}", "unknown field")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise Invalid(f"{path}.type", "expected a string")
    builder = BUILDERS.get(kind)
    if builder is None:
        raise Invalid(f"{path}.type", f"the action {kind!r} is not supported by Burrow")
    reader = ConfigReader(f"{path}.config", raw.get("config"), variables)
    action = builder(reader)
    reader.done()
    if phase not in action.phases:
        allowed = ", ".join(p for p in PHASES if p in action.phases)
        raise Invalid(f"{path}.type", f"{kind} is not allowed in {phase} (only in {allowed})")
    return action
