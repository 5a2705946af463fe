"""Credential ACL rules: their grammar, and the decision whether they allow a bind.

Grammar (one rule per string):

* ``*`` or ``bind:*`` — anything may be bound; an empty rule list means the same.
* ``bind:example.com`` — exactly that hostname (case-insensitive).
* ``bind:*.example.com`` — any hostname ending in ``.example.com``, at any depth,
  including the wildcard name ``*.example.com`` itself, but not ``example.com``.
* ``bind:1.tcp.example.com:20002`` — a TCP address, ``host:port``; the host is a domain,
  an IPv4 address or a bracketed IPv6 address, the port 1-65535.
* ``bind:key=value`` — a label; ``*`` may stand for the key, the value, or both.

The edge asks a :class:`BindPolicy` built from a credential's rules before it binds.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from . import names

MAX_RULE_LENGTH = 512
MAX_RULES = 100

_LABEL_KEY = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"\*|[A-Za-z0-9._:/@+-]{1,255}")


class InvalidRule(ValueError):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class AllowAll:
    pass


@dataclass(frozen=True)
class Domain:
    name: str  # lower-case


@dataclass(frozen=True)
class WildcardDomain:
    suffix: str  # lower-case, with its leading dot: ".example.com"


@dataclass(frozen=True)
class Address:
    host: str
    port: int


@dataclass(frozen=True)
class Label:
    key: str | None  # None: any key
    value: str | None  # None: any value


Rule = AllowAll | Domain | WildcardDomain | Address | Label


def parse_rule(rule: str) -> Rule:
    """Parse one rule, raising :class:`InvalidRule` if it is outside the grammar."""
    if not isinstance(rule, str) or len(rule) > MAX_RULE_LENGTH:
        raise InvalidRule(str(rule)[:MAX_RULE_LENGTH])
    if rule == "*":
        return AllowAll()
    if not rule.startswith("bind:"):
        raise InvalidRule(rule)
    value = rule[len("bind:") :]
    if value == "*":
        return AllowAll()
    if "=" in value:
        key, _, label_value = value.partition("=")
        if _LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(label_value):
            return Label(None if key == "*" else key, None if label_value == "*" else label_value)
        raise InvalidRule(rule)
    if value.startswith("*."):
        suffix = names.hostname(value[2:])
        if suffix is not None:
            return WildcardDomain(f".{suffix}")
        raise InvalidRule(rule)
    name = names.hostname(value)
    if name is not None:
        return Domain(name)
    address = names.address(value)
    if address is not None:
        return Address(*address)
    raise InvalidRule(rule)


def validate_rules(rules: Iterable[str]) -> list[str]:
    """The rules unchanged if every one is valid; raises :class:`InvalidRule` otherwise."""
    checked = list(rules)
    for rule in checked:
        parse_rule(rule)
    return checked


@dataclass(frozen=True)
class BindPolicy:
    """What a credential may bind, decided from its ACL rules."""

    allow_all: bool
    domains: frozenset[str]
    domain_suffixes: tuple[str, ...]
    addresses: frozenset[Address]
    labels: tuple[Label, ...]

    @classmethod
    def from_rules(cls, rules: Iterable[str]) -> BindPolicy:
        parsed = [parse_rule(rule) for rule in rules]
        return cls(
            allow_all=not parsed or any(isinstance(rule, AllowAll) for rule in parsed),
            domains=frozenset(rule.name for rule in parsed if isinstance(rule, Domain)),
            domain_suffixes=tuple(r.suffix for r in parsed if isinstance(r, WildcardDomain)),
            addresses=frozenset(rule for rule in parsed if isinstance(rule, Address)),
            labels=tuple(rule for rule in parsed if isinstance(rule, Label)),
        )

    def allows_hostname(self, hostname: str) -> bool:
        if self.allow_all:
            return True
        name = hostname.lower().rstrip(".")
        if name in self.domains:
            return True
        return any(name.endswith(suffix) and len(name) > len(suffix) for suffix in self.domain_suffixes)

    def allows_address(self, host: str, port: int) -> bool:
        if self.allow_all:
            return True
        parsed_host = names.host(host)
        if parsed_host is None:
            try:
                parsed_host = str(ipaddress.ip_address(host))
            except ValueError:
                return False
            if ":" in parsed_host:
                parsed_host = f"[{parsed_host}]"
        return Address(parsed_host, port) in self.addresses

    def allows_random_address(self) -> bool:
        return self.allow_all

    def allows_labels(self, labels: Mapping[str, str]) -> bool:
        """Every label of a non-empty set must be allowed by some label rule."""
        if self.allow_all:
            return True
        return bool(labels) and all(
            any(
                (rule.key is None or rule.key == key) and (rule.value is None or rule.value == value)
                for rule in self.labels
            )
            for key, value in labels.items()
        )
