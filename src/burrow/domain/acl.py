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

MAX_RULE_LENGTH = 512
MAX_RULES = 100

_LABEL_PART = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL_PART}(?:\.{_LABEL_PART})*", re.IGNORECASE)
_LABEL_KEY = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"\*|[A-Za-z0-9._:/@+-]{1,255}")


class InvalidRule(ValueError):
    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


def _is_domain(text: str) -> bool:
    return len(text) <= 253 and _DOMAIN.fullmatch(text) is not None


def _parse_host(text: str) -> str | None:
    """A normalized host (domain, IPv4 or bracketed IPv6), or None."""
    if text.startswith("[") and text.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    return text.lower() if _is_domain(text) else None


def _parse_port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5 or text.startswith("0"):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


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
        if _is_domain(value[2:]):
            return WildcardDomain(value[1:].lower())
        raise InvalidRule(rule)
    if _is_domain(value):
        return Domain(value.lower())
    host, sep, port_text = value.rpartition(":")
    if sep:
        parsed_host, port = _parse_host(host), _parse_port(port_text)
        if parsed_host is not None and port is not None:
            return Address(parsed_host, port)
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
        parsed_host = _parse_host(host)
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
