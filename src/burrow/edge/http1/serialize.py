"""What goes out: heads rebuilt from parsed fields, bodies in our own framing.

Nothing received is forwarded as it came: the agent gets the request line and fields the
parser accepted (hop-by-hop ones out, ``X-Forwarded-*`` in), the client gets
``HTTP/1.1 <status> <reason>`` and the response's end-to-end fields, each with the
framing this side chose (Content-Length as parsed, chunked re-encoded, de-chunked then
close for HTTP/1.0 clients, or close-delimited) and ``Connection: close`` when the
connection ends after it.
"""

from __future__ import annotations

import zlib
from typing import Any

from .events import RequestHead, ResponseHead
from .fields import (
    CHUNKED,
    CONTENT_LENGTH_SPELLINGS,
    HOP_BY_HOP,
    LENGTH,
    NO_BODY,
    NOT_CONTENT_LENGTH,
    NOTED,
    Headers,
    end_to_end,
)

# The request fields the proxy writes itself, dropped from what the client sent.
_OWN_REQUEST_FIELDS = frozenset({b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"})
_UPGRADE = frozenset({b"upgrade"})
_NOTHING: frozenset[bytes] = frozenset()
_NOT_HOP_BY_HOP = NOTED - HOP_BY_HOP  # noted fields of which none is hop-by-hop


def request_fields(
    head: RequestHead, client_address: bytes, scheme: bytes, drop_expect: bool = False
) -> Headers:
    """The fields forwarded to the agent, before the endpoint's header rules: hop-by-hop
    fields (and those ``Connection`` names) out, ``Upgrade`` kept for an upgrade,
    ``X-Forwarded-For`` appended to, ``X-Forwarded-Host``/``-Proto`` set."""
    named = head.named
    keep = _UPGRADE if head.upgrade else _NOTHING
    fields = [
        (name, value)
        for name, value in head.headers
        if (lower := name.lower()) in keep
        or not (
            lower in HOP_BY_HOP
            or lower in _OWN_REQUEST_FIELDS
            or lower == b"content-length"
            or (named and lower in named)
            or (drop_expect and lower == b"expect")
        )
    ]
    earlier = head.noted.get(b"x-forwarded-for")
    forwarded_for = (
        b", ".join([*(value.strip(b" \t") for value in earlier), client_address])
        if earlier
        else client_address
    )
    fields.append((b"X-Forwarded-For", forwarded_for))
    fields.append((b"X-Forwarded-Host", head.host))
    fields.append((b"X-Forwarded-Proto", scheme))
    return fields


def request_head(
    head: RequestHead, fields: Headers, framing: int, length: int, target: bytes | None = None
) -> bytes:
    """The request head for the agent, with our framing (``length`` for a LENGTH body) and
    ``target`` (a rewritten one) instead of the head's."""
    parts = [b"%b %b HTTP/%b\r\n" % (head.method, target or head.target, head.version)]
    parts += [name + b": " + value + b"\r\n" for name, value in fields]
    if head.upgrade:
        parts.append(b"Connection: Upgrade\r\n")
    if framing == CHUNKED:
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
    elif framing == LENGTH:
        parts.append(b"Content-Length: %d\r\n\r\n" % length)
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


def response_fields(response: ResponseHead) -> Headers:
    """A response's end-to-end fields (``Upgrade`` kept on a 101)."""
    noted = response.noted
    if not response.named and noted.keys() <= _NOT_HOP_BY_HOP:  # the usual answer
        if b"content-length" not in noted:
            return list(response.headers)
        return [
            field
            for field in response.headers
            if field[0] not in CONTENT_LENGTH_SPELLINGS
            and (field[0] in NOT_CONTENT_LENGTH or field[0].lower() != b"content-length")
        ]
    return end_to_end(response.headers, response.named, _UPGRADE if response.status == 101 else _NOTHING)


class Identity:
    """The body as it is: Content-Length and close-delimited bodies, or a chunked body's
    data for an HTTP/1.0 client (which then reads until the close)."""

    __slots__ = ()

    def piece(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""


class Chunked:
    __slots__ = ()

    def piece(self, data: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(data), data) if data else b""

    def end(self) -> bytes:
        return b"0\r\n\r\n"


class GzipChunked:
    """Compressed (gzip) and sent chunked (the compressed length is not known before)."""

    __slots__ = ("_gzip",)

    def __init__(self) -> None:
        self._gzip: Any = zlib.compressobj(6, zlib.DEFLATED, 31)

    def piece(self, data: bytes) -> bytes:
        compressed = self._gzip.compress(data)
        return b"%x\r\n%b\r\n" % (len(compressed), compressed) if compressed else b""

    def end(self) -> bytes:
        rest = self._gzip.flush()
        return (b"%x\r\n%b\r\n" % (len(rest), rest) if rest else b"") + b"0\r\n\r\n"


BodyEncoder = Identity | Chunked | GzipChunked
IDENTITY = Identity()
CHUNKED_ENCODER = Chunked()


def response_head(
    response: ResponseHead, fields: Headers, gzip: bool, close: bool, http10_client: bool = False
) -> tuple[bytes, BodyEncoder, bool]:
    """The head the client gets for a final response (``fields`` are its end-to-end
    fields after the endpoint's rules), the body's encoder, and whether the connection
    closes after it (so too an HTTP/1.0 client's de-chunked or any close-delimited body)."""
    framing = response.framing
    encoder: BodyEncoder = IDENTITY
    if framing == NO_BODY:
        if b"content-length" in response.noted and response.status != 204:
            fields.append((b"Content-Length", b"%d" % response.length))  # a HEAD's, a 304's
    elif gzip:
        fields.append((b"Transfer-Encoding", b"chunked"))
        encoder = GzipChunked()
    elif framing == LENGTH:
        fields.append((b"Content-Length", b"%d" % response.length))
    elif framing == CHUNKED and not http10_client:
        fields.append((b"Transfer-Encoding", b"chunked"))
        encoder = CHUNKED_ENCODER
    else:  # close-delimited, or chunked to an HTTP/1.0 client: the close ends the body
        close = True
    if close:
        fields.append((b"Connection", b"close"))
    lines = b"\r\n".join(map(b": ".join, fields)) + b"\r\n" if fields else b""
    head = b"HTTP/1.1 %d %b\r\n%b\r\n" % (response.status, response.reason, lines)
    return head, encoder, close


def interim_head(response: ResponseHead, fields: Headers) -> bytes:
    """A 1xx response for the client (101 with ``Connection: Upgrade``)."""
    parts = [b"HTTP/1.1 %d %b\r\n" % (response.status, response.reason)]
    parts += [name + b": " + value + b"\r\n" for name, value in fields]
    if response.status == 101:
        parts.append(b"Connection: Upgrade\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)
