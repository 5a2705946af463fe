"""Reserved domains and addresses: what a valid one is, and who may bind what.

A reserved name belongs to one account: only that account's credentials bind it, whatever
another account's ACL allows. Names nobody reserved are first come, first served while
bound, unless the server requires reservation (``--require-reservation``): then hostnames
under ``--domain`` and fixed TCP addresses must be reserved by the binding account. Names
Burrow assigns (random subdomains, random TCP ports) need no reservation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from burrow.domain import errors, names


def normalize_domain(text: str, base_domain: str | None, server_hosts: frozenset[str] = frozenset()) -> str:
    """The lowercase hostname to reserve; a single label means a subdomain of ``base_domain``."""
    name = text.strip().rstrip(".")  # lower-cased by the grammar: str.lower() maps "\u212a" to "k"
    if "." not in name and base_domain:
        name = f"{name}.{base_domain}"
    normal = names.hostname(name)
    if normal is None or "." not in normal:
        raise errors.INVALID_DOMAIN(name=text)
    if is_servers(normal, base_domain or "", server_hosts):
        raise errors.SERVERS_NAME(name=text)
    return normal


def is_under(hostname: str, base_domain: str) -> bool:
    return hostname == base_domain or hostname.endswith(f".{base_domain}")


_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)  # what a browser reads as IPv4


def is_servers(hostname: str, base_domain: str, server_hosts: frozenset[str] = frozenset()) -> bool:
    """Whether ``hostname`` (lower-case) names the server, not a tenant: an IP address
    (IPv6, with its colons; or IPv4 as a browser's URL parser reads one: a top label of
    decimal digits or ``0x`` and hex digits, so ``0x7f000001`` and ``127.1`` too),
    ``localhost`` and names under it outside ``base_domain``, ``base_domain`` itself, or
    one of ``server_hosts`` (the API's own host) or a name under one. A tenant answering on
    any of them could plant cookies the dashboard reads, cookies ignoring ports."""
    if ":" in hostname or _NUMERIC_LABEL.fullmatch(hostname.rsplit(".", 1)[-1]):
        return True
    if base_domain and hostname == base_domain:
        return True
    if is_under(hostname, "localhost") and not is_under(hostname, base_domain):
        return True
    return any(is_under(hostname, host) for host in server_hosts)


@dataclass(frozen=True)
class NameSpace:
    """The names a server hands out: hostnames under ``domain``, ``tcp_host`` on ``tcp_ports``."""

    domain: str = "burrow.localhost"
    tcp_host: str = "127.0.0.1"
    tcp_ports: range = range(20000, 20100)
    server_hosts: frozenset[str] = frozenset()  # the API's own hosts: reserved by no tenant


@dataclass(frozen=True)
class ReservationPolicy:
    """The check a bind makes, given ``owner``: the account that reserved the name, or None
    (the caller reads it from the database, off the event loop)."""

    base_domain: str
    require_reservation: bool = False
    server_hosts: frozenset[str] = frozenset()  # the API's own hosts: never a tenant's

    def check_hostname(
        self, hostname: str, account_id: str, owner: str | None, assigned: bool = False
    ) -> None:
        if is_servers(hostname, self.base_domain, self.server_hosts):
            raise errors.SERVERS_NAME(name=hostname)
        if owner is not None and owner != account_id:
            raise errors.DOMAIN_RESERVED_ELSEWHERE(name=hostname, account=account_id)
        required = self.require_reservation and not assigned and is_under(hostname, self.base_domain)
        if owner is None and required:
            raise errors.NOT_RESERVED(what="domain", name=hostname)

    def check_addr(self, addr: str, account_id: str, owner: str | None, assigned: bool = False) -> None:
        if owner is not None and owner != account_id:
            raise errors.ADDR_RESERVED_ELSEWHERE(addr=addr, account=account_id)
        if owner is None and self.require_reservation and not assigned:
            raise errors.NOT_RESERVED(what="addr", name=addr)
