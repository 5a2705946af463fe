"""The response head the client gets (pure): the agent's parsed head re-serialised, with
the decisions the proxy adds, gzip (the endpoint's compression), the connection's close,
and the endpoint's response header rules."""

from __future__ import annotations

from .http1 import LENGTH, NO_BODY, UNTIL_CLOSE, Headers, ResponseHead
from .http1.serialize import BodyEncoder, interim_head, response_fields, response_head
from .proxy_request import ProxyRequest
from .traffic_phases import on_http_response


def upgrade_head(request: ProxyRequest, response: ResponseHead) -> bytes:
    """The 101 for an upgrade request; ``request.status`` records it."""
    request.status = 101
    fields = response_fields(response)
    if not request.plain:
        fields, _ = _endpoint_rules(request, 101, fields)
    return interim_head(response, fields)


def _endpoint_rules(request: ProxyRequest, status: int, fields: Headers) -> tuple[Headers, bool]:
    """The endpoint's response phase (its options' rules and its Traffic Policy's); and
    whether it asks for the body compressed."""
    enforced = request.tunnel.policy.enforced if request.tunnel is not None else None
    if enforced is None or request.plan is None:
        return fields, False
    return on_http_response(enforced, request.policy_env, status, fields)


def final_head(request: ProxyRequest, response: ResponseHead, last: bool) -> tuple[bytes, BodyEncoder]:
    """The head of a final (non-1xx) response and its body's encoder. ``last``: the client
    has ended its side and nothing more waits. Sets ``request.status`` and whether the
    connection stays open after it (``request.keep_alive``)."""
    status = request.status = response.status
    fields = response_fields(response)
    framing = response.framing
    compress = False
    if not request.plain:
        fields, compress = _endpoint_rules(request, status, fields)
    gzip = (
        compress
        and request.accepts_gzip
        and request.version == "1.1"
        and framing != NO_BODY
        and not (framing == LENGTH and response.length == 0)
        and status != 206
        and not any(name.lower() == b"content-encoding" for name, _ in response.headers)
    )
    if gzip:
        fields.append((b"Content-Encoding", b"gzip"))
        fields.append((b"Vary", b"Accept-Encoding"))
    close = (
        not request.keep_alive
        or framing == UNTIL_CLOSE
        or last
        or request.upgrade  # the parser has stopped at the upgrade: no more requests here
        or not request.complete  # answered before the body ended: no more requests here
    )
    head, encoder, close = response_head(response, fields, gzip, close, request.version == "1.0")
    request.keep_alive = not close
    return head, encoder
