"""Which address a request comes from, behind trusted proxies (``--trusted-proxies``).

A connection's peer is its client unless the peer is a trusted proxy; then the client is
the right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy (each
proxy appends the peer it saw, so everything left of the first untrusted hop may be
forged). An entry that is not an IP address ends the walk at the proxy that wrote it:
fail closed, the request counts as that proxy's, never as an address a client chose.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32  # entries of X-Forwarded-For looked at, from the right


def parse_address(text: str) -> IPAddress | None:
    """An IP address, as a peer or an X-Forwarded-For entry gives it (``[v6]`` and
    ``v4:port`` forms too); IPv4-mapped IPv6 as the IPv4 address it carries."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class TrustedProxies:
    """The networks whose connections may say who the client is."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, text: str | Sequence[str] | None) -> TrustedProxies:
        """From ``CIDR,CIDR`` (or a list of them); a bare address is a /32 or /128."""
        items = text.split(",") if isinstance(text, str) else list(text or [])
        networks = []
        for item in (item.strip() for item in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=True))
            except ValueError as problem:
                raise ValueError(f"{item!r} is not a CIDR network: {problem}") from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, peer: str) -> bool:
        if not self.networks:
            return False  # the default: no parsing on every connection
        ip = parse_address(peer)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address: ``peer``, or from the ``X-Forwarded-For`` values (in order)
        when ``peer`` is trusted."""
        if not self.trusts(peer):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            ip = parse_address(hop)
            if ip is None:
                return client  # garbage: the last hop a trusted proxy vouched for
            client = str(ip)
            if not any(ip in network for network in self.networks):
                return client
        return client  # every hop trusted: the left-most one
