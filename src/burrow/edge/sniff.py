"""Reading where a public connection wants to go, without consuming it.

The TLS listener routes by the ClientHello's server name (SNI), which it never decrypts,
and the HTTPS listener picks its certificate by it (the HTTP proxy parses requests
itself). A pure function over the bytes read so far: it answers the name,
:data:`NEED_MORE`, or None when the bytes cannot carry one.
"""

from __future__ import annotations

from typing import Final, Literal

NEED_MORE: Final = "need-more"
NeedMore = Literal["need-more"]

MAX_CLIENT_HELLO = 16 * 1024 + 5


def tls_server_name(data: bytes) -> str | NeedMore | None:
    """The SNI host name of a TLS ClientHello, lower-cased."""
    if len(data) < 5:
        return NEED_MORE
    if data[0] != 0x16 or data[1] != 0x03:  # handshake record, TLS 1.x
        return None
    record_length = int.from_bytes(data[3:5], "big")
    if len(data) < 5 + record_length:
        return None if 5 + record_length > MAX_CLIENT_HELLO else NEED_MORE
    body = data[5 : 5 + record_length]
    try:
        return _server_name(body)
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def _server_name(hello: bytes) -> str | None:
    if hello[0] != 0x01:  # client_hello
        return None
    position = 4 + 2 + 32  # handshake header, version, random
    position += 1 + hello[position]  # session id
    position += 2 + int.from_bytes(hello[position : position + 2], "big")  # cipher suites
    position += 1 + hello[position]  # compression methods
    if position + 2 > len(hello):
        return None
    extensions_end = position + 2 + int.from_bytes(hello[position : position + 2], "big")
    position += 2
    while position + 4 <= min(extensions_end, len(hello)):
        kind = int.from_bytes(hello[position : position + 2], "big")
        length = int.from_bytes(hello[position + 2 : position + 4], "big")
        position += 4
        if kind == 0:  # server_name
            names = hello[position : position + length]
            cursor = 2
            while cursor + 3 <= len(names):
                name_type = names[cursor]
                name_length = int.from_bytes(names[cursor + 1 : cursor + 3], "big")
                if name_type == 0:
                    return names[cursor + 3 : cursor + 3 + name_length].decode("ascii").lower()
                cursor += 3 + name_length
            return None
        position += length
    return None


def _extension(hello: bytes, wanted: int) -> bytes | None:
    """The body of one ClientHello extension (a whole record's handshake message)."""
    if hello[0] != 0x01:
        return None
    position = 4 + 2 + 32
    position += 1 + hello[position]
    position += 2 + int.from_bytes(hello[position : position + 2], "big")
    position += 1 + hello[position]
    if position + 2 > len(hello):
        return None
    extensions_end = position + 2 + int.from_bytes(hello[position : position + 2], "big")
    position += 2
    while position + 4 <= min(extensions_end, len(hello)):
        kind = int.from_bytes(hello[position : position + 2], "big")
        length = int.from_bytes(hello[position + 2 : position + 4], "big")
        position += 4
        if kind == wanted:
            return hello[position : position + length]
        position += length
    return None


def tls_alpn_protocols(data: bytes) -> list[bytes]:
    """The ALPN protocols a complete ClientHello (as :func:`tls_server_name` read it) offers."""
    try:
        record_length = int.from_bytes(data[3:5], "big")
        body = _extension(data[5 : 5 + record_length], 16)  # application_layer_protocol_negotiation
        if body is None:
            return []
        protocols, cursor = [], 2
        while cursor < len(body):
            size = body[cursor]
            protocols.append(body[cursor + 1 : cursor + 1 + size])
            cursor += 1 + size
        return protocols
    except IndexError:
        return []
