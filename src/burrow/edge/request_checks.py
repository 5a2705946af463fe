"""What the proxy decides about a parsed request before it goes anywhere (pure): whether
its Host and target can be routed at all, and what the endpoint's policy says of it."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from burrow.domain import webhooks
from burrow.domain.endpoint import WEBHOOK_REFUSED, EndpointPolicy
from burrow.domain.tunnels import Tunnel

from .forward_head import accepts_gzip
from .http1 import CHUNKED, RequestHead
from .pages import CONNECT_NOT_SERVED, NOT_THE_SERVER_NAME, bad_request, not_found_page, refusal_page
from .peers import Peers
from .proxy_request import ProxyRequest
from .traffic_phases import CLOSE, compresses, connection_env, on_http_request, on_tcp_connect, request_env

# The names of recent Host values: a connection's requests name the same Host again and again.
_HOST_NAMES: dict[bytes, str] = {}
MAX_HOST_NAMES = 1024
MAX_CACHED_HOST = 300  # a DNS name (253) with a port; longer values are not kept


def host_name(raw: bytes) -> str:
    """A Host value's name: lower case, without the port and a final dot."""
    host = raw.decode("latin-1").lower()
    name = host[: host.find("]") + 1] if host.startswith("[") else host.rsplit(":", 1)[0]
    return name.rstrip(".")


def unroutable(request: ProxyRequest, scheme: str, sni: str | None) -> bytes | None:
    """The answer to a request that names no routable Host, else None (``request.host``
    is then its Host's name: lower case, no port, no final dot)."""
    noted = request.noted
    if b"host" not in noted or noted[b"host"][1:] or not noted[b"host"][0]:  # (values come without OWS)
        return bad_request("A request needs exactly one Host header.")
    raw = noted[b"host"][0]
    if raw in _HOST_NAMES:
        request.host = _HOST_NAMES[raw]
    else:
        request.host = host_name(raw)
        if len(raw) <= MAX_CACHED_HOST:
            if len(_HOST_NAMES) >= MAX_HOST_NAMES:
                _HOST_NAMES.clear()  # a cache, not a table: forget rather than grow
            _HOST_NAMES[raw] = request.host
    target = request.target
    if target[:1] != b"/" and target != b"*":
        authority = target.split(b"://", 1)[-1].split(b"/", 1)[0].decode("latin-1").lower()
        if b"://" not in target or authority.rsplit(":", 1)[0] != request.host:
            return bad_request("The request target must name the Host it is sent to.")
    if request.method == b"CONNECT":
        return CONNECT_NOT_SERVED
    if scheme == "https" and request.host != sni:
        return NOT_THE_SERVER_NAME
    return None


InternalLookup = Callable[[str, str], Tunnel | None]  # (account id, host) -> internal endpoint
MAX_INTERNAL_HOPS = 4  # forward-internal from an internal endpoint to another, at most this deep


def apply_policy(
    request: ProxyRequest,
    policy: EndpointPolicy,
    peers: Peers,
    scheme: str,
    internal: InternalLookup | None = None,
    hops: int = 0,
    elsewhere: bool = False,
) -> None:
    """The endpoint's checks (``request.answer`` set when one refuses), its Traffic Policy
    (the connection's phase, then the request's) and what they ask of the forwarding (a
    whole body first, compression, header edits). A forward-internal moves the request to
    an internal endpoint of the same account (``internal`` finds it), whose own options and
    policy then run in turn. ``elsewhere``: the cluster may hold internal endpoints on
    other nodes; one not found here is then noted in ``request.internal_elsewhere`` (its
    host, whether it falls back to this endpoint) for the proxy to look up and relay to."""
    if policy.plain:
        request.chunked = request.head is not None and request.head.framing == CHUNKED
        return
    request.plain = False
    client_ip = peers.client_ip
    traffic, head, tunnel = policy.enforced, request.head, request.tunnel
    if traffic is not None and head is not None and tunnel is not None:
        env = connection_env(peers, tunnel)
        if not on_tcp_connect(traffic, env, client_ip):
            request.answer = CLOSE
            return
        env = request.policy_env = request_env(traffic, env, head, scheme, request.host)
        authorization = webhooks.header(request.headers, b"authorization")
        plan = on_http_request(traffic, env, head, client_ip, authorization, request.plan)
        if plan.answer is not None:
            request.answer = plan.answer
            return
        request.plan = plan
        if compresses(traffic):
            request.accepts_gzip = accepts_gzip(request.noted.get(b"accept-encoding", []))
        if plan.forward is not None:
            forwarded = plan.forward
            plan.forward = None
            host = urlsplit(forwarded.url.text).hostname or ""
            found = internal(tunnel.account_id, host) if internal is not None and host else None
            if found is not None and hops < MAX_INTERNAL_HOPS:
                request.tunnel = found
                apply_policy(request, found.policy, peers, scheme, internal, hops + 1, elsewhere)
                return
            if found is None and elsewhere and host and hops < MAX_INTERNAL_HOPS:
                request.internal_elsewhere = (host, forwarded.on_error == "continue", hops)
            elif forwarded.on_error != "continue":
                request.answer = not_found_page(host or forwarded.url.text)
                return
    # Webhook verification (an option or a policy's verify-webhook) needs the body whole.
    verifying = request.plan is not None and bool(request.plan.verify)
    request.whole_body = policy.buffer_body_up_to or (webhooks.MAX_BODY if verifying else 0)
    # A body the edge must have whole goes on with its length.
    request.chunked = request.head is not None and request.head.framing == CHUNKED and not request.whole_body


def continues_here(request: ProxyRequest, head: RequestHead) -> bool:
    """Whether the edge answers the client's ``Expect: 100-continue`` itself: it reads the
    body whole (``whole_body``) before forwarding, for a request it has not answered."""
    return (
        bool(request.whole_body)
        and request.answer is None
        and request.version == "1.1"
        and head.expect_continue
    )


def check_body(request: ProxyRequest) -> None:
    """A whole body, once it has come: the endpoint's checks of it (webhook signatures)."""
    if request.answer is None and request.whole_body and request.tunnel is not None:
        body = bytes(request.body)
        now = time.time()
        for action in request.plan.verify if request.plan is not None else ():
            if action.enforce and not action.verifier.verify(request.headers, body, now):
                request.answer = refusal_page(WEBHOOK_REFUSED)
                return
