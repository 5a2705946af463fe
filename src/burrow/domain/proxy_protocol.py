"""PROXY protocol headers (haproxy's proxy-protocol.txt, versions 1 and 2), built, not parsed.

The edge writes one first on a proxy stream so the agent's local service learns the public
client's address. Addresses of mixed families are both written as IPv6 (IPv4-mapped), and an
IPv4-mapped IPv6 address is written as the IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
import struct

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_PROXY_COMMAND = 0x21  # version 2, command PROXY
_V2_LOCAL_COMMAND = 0x20  # version 2, command LOCAL (no addresses)
_FAMILY_INET, _FAMILY_INET6 = 0x10, 0x20
_TRANSPORT_STREAM, _TRANSPORT_DGRAM = 0x01, 0x02


def _address(host: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _same_family(source: IPAddress, destination: IPAddress) -> tuple[IPAddress, IPAddress]:
    if source.version == destination.version:
        return source, destination

    def as_v6(ip: IPAddress) -> ipaddress.IPv6Address:
        return ip if isinstance(ip, ipaddress.IPv6Address) else ipaddress.IPv6Address(f"::ffff:{ip}")

    return as_v6(source), as_v6(destination)


def header(version: int, client: tuple[str, int], server: tuple[str, int], tcp: bool = True) -> bytes:
    """The header of ``version`` (1 or 2) for a connection from ``client`` to ``server``.

    Addresses that are not IP literals (or a non-TCP transport in version 1) give the
    "unknown" form each version defines, so the receiver falls back to the real peer.
    """
    source, destination = _address(client[0]), _address(server[0])
    known = source is not None and destination is not None
    if version == 1:
        if not known or not tcp:
            return b"PROXY UNKNOWN\r\n"
        assert source is not None and destination is not None
        source, destination = _same_family(source, destination)
        inet = "TCP4" if source.version == 4 else "TCP6"
        return f"PROXY {inet} {source} {destination} {client[1]} {server[1]}\r\n".encode("ascii")
    if version != 2:
        raise ValueError(f"PROXY protocol version {version} does not exist")
    if not known:
        return V2_SIGNATURE + bytes([_V2_LOCAL_COMMAND, 0x00]) + struct.pack("!H", 0)
    assert source is not None and destination is not None
    source, destination = _same_family(source, destination)
    family = _FAMILY_INET if source.version == 4 else _FAMILY_INET6
    transport = _TRANSPORT_STREAM if tcp else _TRANSPORT_DGRAM
    addresses = source.packed + destination.packed + struct.pack("!HH", client[1], server[1])
    return (
        V2_SIGNATURE
        + bytes([_V2_PROXY_COMMAND, family | transport])
        + struct.pack("!H", len(addresses))
        + addresses
    )
