"""IP restrictions: which client addresses may reach an endpoint.

A deny rule wins over an allow rule; with any allow rule, an address no allow rule
covers is refused. IPv4 and IPv6 rules both apply, and an IPv4-mapped IPv6 client
(``::ffff:a.b.c.d``, as a dual-stack listener reports IPv4 clients) is matched as the
IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from . import errors

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidr(text: object) -> IPNetwork:
    """A CIDR (host bits allowed, a bare address is a /32 or /128), or ngrok's error."""
    if not isinstance(text, str):
        raise errors.INVALID_CIDR(cidr=text)
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise errors.INVALID_CIDR(cidr=text) from None


def unmapped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class IPRestriction:
    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, allow: Iterable[object], deny: Iterable[object]) -> IPRestriction:
        return cls(tuple(map(parse_cidr, allow)), tuple(map(parse_cidr, deny)))

    def allows(self, ip: IPAddress) -> bool:
        ip = unmapped(ip)
        # Membership across families is simply False, so mixed lists need no care here.
        if any(ip in network for network in self.deny):
            return False
        return not self.allow or any(ip in network for network in self.allow)
