"""Reserved domains and addresses: what a valid one is, and who may bind what.

A reserved name belongs to one account: only that account's credentials bind it, whatever
another account's ACL allows. Names nobody reserved are first come, first served while
bound, unless the server requires reservation (``--require-reservation``): then hostnames
under ``--domain`` and fixed TCP addresses must be reserved by the binding account. Names
Burrow assigns (random subdomains, random TCP ports) need no reservation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from burrow.domain import acl, errors


def normalize_domain(text: str, base_domain: str | None) -> str:
    """The lowercase hostname to reserve; a single label means a subdomain of ``base_domain``."""
    name = text.strip().lower().rstrip(".")
    if "." not in name and base_domain:
        name = f"{name}.{base_domain}"
    if not acl._is_domain(name) or "." not in name:
        raise errors.INVALID_DOMAIN(name=text)
    return name


def is_under(hostname: str, base_domain: str) -> bool:
    return hostname == base_domain or hostname.endswith(f".{base_domain}")


@dataclass(frozen=True)
class NameSpace:
    """The names a server hands out: hostnames under ``domain``, ``tcp_host`` on ``tcp_ports``."""

    domain: str = "burrow.localhost"
    tcp_host: str = "127.0.0.1"
    tcp_ports: range = range(20000, 20100)


@dataclass(frozen=True)
class ReservationPolicy:
    """The check a bind makes: ``lookup`` says which account reserved a domain or address."""

    lookup_domain: Callable[[str], str | None]  # hostname -> account id, or None
    lookup_addr: Callable[[str], str | None]  # "host:port" -> account id, or None
    base_domain: str
    require_reservation: bool = False

    def check_hostname(self, hostname: str, account_id: str, assigned: bool = False) -> None:
        owner = self.lookup_domain(hostname)
        if owner is not None and owner != account_id:
            raise errors.DOMAIN_RESERVED_ELSEWHERE(name=hostname, account=account_id)
        required = self.require_reservation and not assigned and is_under(hostname, self.base_domain)
        if owner is None and required:
            raise errors.NOT_RESERVED(what="domain", name=hostname)

    def check_addr(self, addr: str, account_id: str, assigned: bool = False) -> None:
        owner = self.lookup_addr(addr)
        if owner is not None and owner != account_id:
            raise errors.ADDR_RESERVED_ELSEWHERE(addr=addr, account=account_id)
        if owner is None and self.require_reservation and not assigned:
            raise errors.NOT_RESERVED(what="addr", name=addr)
