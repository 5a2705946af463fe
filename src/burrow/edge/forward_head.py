"""The request head the agent gets (pure): the client's fields without the hop-by-hop ones,
with ``X-Forwarded-*``, the endpoint's header rules, and the proxy's own framing.

An endpoint without options (``request.plain``) takes a fast path: the client's field
lines but those the proxy drops (:func:`kept_fields`; all of them, joined in one call, when
the parser noted none of those), spliced with ours in one format."""

from __future__ import annotations

from .http1 import CHUNKED, HOP_BY_HOP, LENGTH, Headers
from .http1.fields import NOTED
from .http1.serialize import request_fields, request_head
from .proxy_request import ProxyRequest
from .traffic_phases import edited

# Framing and forwarding fields the proxy writes itself, dropped from the client's.
_DROPPED = HOP_BY_HOP | {b"content-length", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-for"}
# Connection options that name no other field.
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
_PLAIN_REQUEST_HEAD = (
    b"%b %b HTTP/%b\r\n%bX-Forwarded-For: %b\r\nX-Forwarded-Host: %b\r\nX-Forwarded-Proto: %b\r\n"
)


assert _DROPPED <= NOTED  # so a request whose noted fields hold none of them keeps every field


def kept_fields(headers: Headers, noted: dict[bytes, list[bytes]]) -> bytes:
    """The field lines forwarded as they are on the fast path."""
    if _DROPPED.isdisjoint(noted):  # the usual request: every field goes on
        return b"\r\n".join(map(b": ".join, headers)) + b"\r\n" if headers else b""
    return b"".join([b"%b: %b\r\n" % field for field in headers if field[0].lower() not in _DROPPED])


def forwarded_head(request: ProxyRequest, client_address: bytes, scheme: bytes) -> bytes:
    """The head forwarded to the agent for a routed request (``request.head`` is set)."""
    head = request.head
    assert head is not None
    if not request.plain or not head.named <= _CONNECTION_OPTIONS:
        assert request.tunnel is not None
        fields = request_fields(head, client_address, scheme, drop_expect=request.whole_body > 0)
        target = head.target
        if request.plan is not None:
            fields, target = edited(fields, request.plan.edits), request.plan.target
        if request.whole_body:  # the body, all here, goes with its length
            return request_head(head, fields, LENGTH, len(request.body), target)
        return request_head(head, fields, head.framing, head.length, target)
    # The common case: the fields kept while parsing, spliced with ours.
    noted = request.noted
    forwarded_for = (
        b", ".join([*noted[b"x-forwarded-for"], client_address])
        if b"x-forwarded-for" in noted
        else client_address
    )
    data = _PLAIN_REQUEST_HEAD % (
        request.method,
        request.target,
        head.version,
        kept_fields(request.headers, noted),
        forwarded_for,
        head.host,
        scheme,
    )
    if request.upgrade:
        data += b"".join([b"Upgrade: %b\r\n" % value for value in noted.get(b"upgrade", [])])
        data += b"Connection: Upgrade\r\n"
    if head.framing == CHUNKED:
        return data + b"Transfer-Encoding: chunked\r\n\r\n"
    if head.framing == LENGTH:
        return data + b"Content-Length: %d\r\n\r\n" % head.length
    return data + b"\r\n"


def internal_relay_start(request: ProxyRequest, scheme: bytes) -> bytes:
    """What starts a forward-internal request relayed to the node holding the internal
    endpoint: the head as this endpoint's policy left it, without this edge's
    ``X-Forwarded-*`` (the other node adds them, with the client's address it is given),
    and the body received so far."""
    head = request.head
    assert head is not None
    fields = request_fields(head, b"", scheme, drop_expect=request.whole_body > 0)[:-3]
    earlier = head.noted.get(b"x-forwarded-for")
    if earlier:
        fields.append((b"X-Forwarded-For", b", ".join(value.strip(b" \t") for value in earlier)))
    target = head.target
    if request.plan is not None:
        fields, target = edited(fields, request.plan.edits), request.plan.target
    if request.whole_body:
        data = request_head(head, fields, LENGTH, len(request.body), target)
    else:
        data = request_head(head, fields, head.framing, head.length, target)
    if request.body:
        data += body_piece(request, bytes(request.body))
        request.body.clear()
    if request.complete and request.chunked:
        data += b"0\r\n\r\n"
    return data


def accepts_gzip(values: list[bytes]) -> bool:
    """Whether an ``Accept-Encoding`` allows gzip (``gzip`` or ``*`` with a q above 0)."""
    for value in values:
        for item in value.split(b","):
            coding, _, params = item.strip().partition(b";")
            if coding.strip().lower() in (b"gzip", b"*"):
                q = params.strip().lower()
                return not (q.startswith(b"q=") and q[2:].strip().rstrip(b"0").rstrip(b".") in (b"0", b""))
    return False


def body_piece(request: ProxyRequest, body: bytes) -> bytes:
    """A piece of the request's body, framed as the head forwarded says."""
    return b"%x\r\n%b\r\n" % (len(body), body) if request.chunked else body


def forwarded_start(request: ProxyRequest, client_address: bytes, scheme: bytes) -> bytes:
    """What starts a request on its stream: the head, the body received so far (taken out
    of ``request.body``), and the body's end if it has come."""
    data = forwarded_head(request, client_address, scheme)
    if request.body:
        data += body_piece(request, bytes(request.body))
        request.body.clear()
    if request.complete and request.chunked:
        data += b"0\r\n\r\n"
    return data
