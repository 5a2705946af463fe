"""PROXY protocol headers (haproxy's proxy-protocol.txt, versions 1 and 2): built and parsed.

The edge writes one first on a proxy stream so the agent's local service learns the public
client's address. Addresses of mixed families are both written as IPv6 (IPv4-mapped), and an
IPv4-mapped IPv6 address is written as the IPv4 address it carries.

:func:`parse` reads the one a load balancer in front of Burrow sends first (``--proxy-protocol``),
sans I/O and strictly: one exact grammar per version, nothing longer than
:data:`MAX_HEADER_BYTES`, no guessing. What it cannot accept is a :class:`ProxyHeaderError`.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

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


MAX_V1_BYTES = 107  # the specification's longest v1 line, CRLF included
MAX_HEADER_BYTES = 16 + 2048  # v2: its fixed part and addresses with TLVs up to 2 KiB (AWS, GCP send few)
_V1_PREFIX = b"PROXY "
_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}


class ProxyHeaderError(ValueError):
    """Bytes that are not a PROXY header this parser accepts (the connection is to be closed)."""


@dataclass(frozen=True)
class ProxyHeader:
    length: int  # bytes the header took: what follows is the connection's own data
    source: tuple[str, int] | None  # the client; None for LOCAL / UNKNOWN (the peer is the client)
    destination: tuple[str, int] | None = None


def _v1_address(text: bytes, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError("a PROXY v1 address is not an IP address") from None
    if ip.version != version or (version == 4 and not re.fullmatch(rb"[0-9.]+", text)):
        raise ProxyHeaderError("a PROXY v1 address is not of its family")
    return str(ip)


def _v1_port(text: bytes) -> int:
    if re.fullmatch(rb"0|[1-9][0-9]{0,4}", text) is None or int(text) > 65535:
        raise ProxyHeaderError("a PROXY v1 port is not a port")
    return int(text)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, MAX_V1_BYTES)
    if end < 0:
        if len(data) >= MAX_V1_BYTES or b"\n" in data:
            raise ProxyHeaderError("a PROXY v1 header is longer than 107 bytes or not ended by CRLF")
        return None
    line = data[len(_V1_PREFIX) : end]
    if line == b"UNKNOWN" or line.startswith(b"UNKNOWN "):
        return ProxyHeader(end + 2, None)
    parts = line.split(b" ")
    if len(parts) != 5 or parts[0] not in _V1_FAMILIES:
        raise ProxyHeaderError("a PROXY v1 header is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    version = _V1_FAMILIES[parts[0]]
    source = (_v1_address(parts[1], version), _v1_port(parts[3]))
    destination = (_v1_address(parts[2], version), _v1_port(parts[4]))
    return ProxyHeader(end + 2, source, destination)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    command, family = data[12], data[13]
    if command >> 4 != 2:
        raise ProxyHeaderError("a PROXY v2 header of another version")
    (length,) = struct.unpack("!H", data[14:16])
    total = 16 + length
    if total > MAX_HEADER_BYTES:
        raise ProxyHeaderError(f"a PROXY v2 header longer than {MAX_HEADER_BYTES} bytes")
    if len(data) < total:
        return None
    body = data[16:total]
    if command == _V2_LOCAL_COMMAND:
        return ProxyHeader(total, None)  # the proxy's own connection (a health check)
    if command != _V2_PROXY_COMMAND:
        raise ProxyHeaderError("a PROXY v2 header with an unknown command")
    transport = family & 0x0F
    if family >> 4 == 0 and transport == 0:
        return ProxyHeader(total, None)  # UNSPEC: the receiver uses the real peer
    if transport != _TRANSPORT_STREAM:
        raise ProxyHeaderError("a PROXY v2 header for another transport than TCP")
    size = {_FAMILY_INET: 4, _FAMILY_INET6: 16}.get(family & 0xF0)
    if size is None:
        raise ProxyHeaderError("a PROXY v2 header of another family than IPv4 or IPv6")
    if len(body) < 2 * size + 4:
        raise ProxyHeaderError("a PROXY v2 header too short for its addresses")
    kind = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
    source_port, destination_port = struct.unpack("!HH", body[2 * size : 2 * size + 4])
    source = (str(_address(str(kind(body[:size])))), source_port)
    destination = (str(_address(str(kind(body[size : 2 * size])))), destination_port)
    return ProxyHeader(total, source, destination)


def parse(data: bytes) -> ProxyHeader | None:
    """The PROXY header (v1 or v2) at the start of ``data``; None while more bytes are needed.

    Raises :class:`ProxyHeaderError` for anything else: no header, a malformed one, one too long.
    """
    for prefix, parser in ((V2_SIGNATURE, _parse_v2), (_V1_PREFIX, _parse_v1)):
        seen = data[: len(prefix)]
        if prefix.startswith(seen) and len(seen) < len(prefix):
            return None  # not enough to tell yet
        if seen == prefix:
            return parser(data)
    raise ProxyHeaderError("the connection did not start with a PROXY header")
