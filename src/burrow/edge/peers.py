"""A public connection's two ends, read once from its transport."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from burrow.domain.endpoint import IPAddress


def peer_ip(peer: tuple[str, int]) -> IPAddress:
    try:
        return ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return ipaddress.ip_address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class Peers:
    client: tuple[str, int]
    server: tuple[str, int]
    client_text: str  # host:port, IPv6 in brackets: for agents and the traffic log
    client_ip: IPAddress
    client_bytes: bytes  # the client's address as X-Forwarded-For gives it

    UNKNOWN: ClassVar[Peers]

    @classmethod
    def of(cls, transport: asyncio.BaseTransport, given_client: tuple[str, int] | None = None) -> Peers:
        """``given_client``: the client's address when the transport's peer is not the client
        (a connection relayed from another node)."""
        client, client_text, server = ("0.0.0.0", 0), "unknown:0", ("0.0.0.0", 0)
        peer = given_client or transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            client = (str(peer[0]), int(peer[1]))
            host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
            client_text = f"{host}:{peer[1]}"
        sock = transport.get_extra_info("sockname")
        if isinstance(sock, tuple) and len(sock) >= 2:
            server = (str(sock[0]), int(sock[1]))
        return cls(client, server, client_text, peer_ip(client), client[0].encode())


Peers.UNKNOWN = Peers(
    ("0.0.0.0", 0), ("0.0.0.0", 0), "unknown:0", ipaddress.ip_address("0.0.0.0"), b"0.0.0.0"
)
