"""What an HTTP(S) connection sends to other nodes of a cluster (the relay, ``relay.py``):
a connection whose first request names a host another node holds, and a forward-internal
to an internal endpoint another node holds (one relay connection per request, which the
proxy reads as it reads an agent's stream). And, on the node holding it, a relayed
forward-internal's routing: to the named account's internal endpoint only."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, cast

from burrow.domain.tunnels import Tunnel

from .forward_head import internal_relay_start
from .muxado_streams import MuxStream
from .pages import not_found_page
from .proxy_request import ProxyRequest
from .relay import INTERNAL_UNREACHABLE, RelayRoutes
from .request_checks import apply_policy, unroutable
from .response_relay import ResponseRelay

if TYPE_CHECKING:
    from .http_proxy import HttpProxyConnection


async def route(
    connection: HttpProxyConnection, request: ProxyRequest, routes: RelayRoutes, first: bytearray
) -> None:
    """The first request names no local tunnel: hand the connection to the node holding
    its Host, if one does (its listener keeps the time from then on); else answer 404."""
    found = await routes.lookup("host", request.host)
    if connection._lost:
        return
    if found is None:
        request.routing = False
        request.answer = connection.listeners.not_found(connection.scheme, request.host)
        connection._pump()
        return
    if connection._timer is not None:
        connection._timer.cancel()
        connection._timer = None
    header = {"listener": "http", "client": list(connection.peers.client)}
    ended = functools.partial(connection.connection_lost, None)
    await connection.listeners.relay_out(connection.transport, bytes(first), header, found, ended)


def judge(connection: HttpProxyConnection, request: ProxyRequest, tunnel: Tunnel, hops: int) -> None:
    """The endpoint's options and policy, with the JWT keys they need; then, for a
    forward-internal to an endpoint this node does not hold, which node does."""
    request.tunnel = tunnel
    internal = connection.listeners.internal_tunnel
    others = not connection.relayed and connection.listeners.internal_elsewhere
    apply = functools.partial(
        apply_policy, request, tunnel.policy, connection.peers, connection.scheme, internal, hops, others
    )
    if tunnel.policy.traffic is None:  # no jwt-validation keys to wait for
        apply()
    else:
        connection.listeners.jwks.judge(request, tunnel, apply, connection._judged)
    look_up_internal(connection, request)


def prepare_internal(
    connection: HttpProxyConnection, request: ProxyRequest, account_id: str, host: str, hops: int
) -> None:
    """A forward-internal another node relayed: to the account's internal endpoint here, or 404."""
    request.answer = unroutable(request, "http", None)  # its Host is the forwarding endpoint's
    if request.answer is not None:
        return
    tunnel = connection.listeners.internal_tunnel(account_id, host)
    if tunnel is None or not tunnel.internal:
        request.answer = not_found_page(host)
        return
    judge(connection, request, tunnel, hops)


def look_up_internal(connection: HttpProxyConnection, request: ProxyRequest) -> None:
    """A forward-internal to an endpoint this node does not hold: look up which node does
    (the request waits, reading paused, meanwhile)."""
    if request.internal_elsewhere is None or request.routing or request.answer is not None:
        return
    request.routing = True
    task = connection._loop.create_task(_find_internal(connection, request))
    connection._lookups.add(task)
    task.add_done_callback(connection._lookups.discard)


async def _find_internal(connection: HttpProxyConnection, request: ProxyRequest) -> None:
    assert request.internal_elsewhere is not None and request.tunnel is not None
    host, fall_back, _ = request.internal_elsewhere
    routes = connection.listeners.relay_routes
    key = f"{request.tunnel.account_id}/{host.lower().rstrip('.')}"  # the registry's name for it
    found = await routes.lookup("internal", key) if routes is not None else None
    if connection._lost:
        return
    request.routing = False
    if found is not None:
        request.relay_to = found
    else:
        request.internal_elsewhere = None
        if not fall_back:  # on_error: continue goes on to this endpoint's own upstream
            request.answer = not_found_page(host)
    connection._pump()


def start_internal(connection: HttpProxyConnection, request: ProxyRequest, relay_addr: str) -> None:
    """Send the request to the node at ``relay_addr``, which holds its internal endpoint."""
    connection._drop_stream(reset=False)
    connection._opening = True
    connection._stream_task = connection._loop.create_task(_open_internal(connection, request, relay_addr))


async def _open_internal(connection: HttpProxyConnection, request: ProxyRequest, relay_addr: str) -> None:
    """A relay connection for the request, held as the connection's stream until answered."""
    assert request.tunnel is not None and request.internal_elsewhere is not None
    host, _, hops = request.internal_elsewhere
    header = {
        "listener": "internal",
        "account": request.tunnel.account_id,
        "host": host,
        "scheme": connection.scheme,
        "hops": hops + 1,
        "client": list(connection.peers.client),
    }
    relayed = None
    try:
        relayed = await connection.listeners.open_internal(relay_addr, header)
        connection._opening = False
        if relayed is None:
            request.answer = INTERNAL_UNREACHABLE
            connection._current = None
            connection._answer_here(request)
            return
        stream = cast(MuxStream, relayed)  # what the proxy uses of a stream, it has
        if connection._lost:
            relayed.reset()
            return
        connection._stream, connection._stream_tunnel, connection._relay = stream, None, ResponseRelay()
        relayed.holder = connection
        connection._up.attach(stream)
        request.started = True
        connection._relay.expect(request)
        connection._up.send(internal_relay_start(request, connection._scheme_bytes))
        # The answer is the internal endpoint's, its response phase run by its node: this
        # endpoint's own is skipped, as for any forward-internal.
        request.plain = True
        connection._update_reading()
        await relayed.forward_to(connection)
        connection._agent_ended(stream, reset=False)
    except ConnectionError:
        if relayed is not None:
            connection._agent_ended(cast(MuxStream, relayed), reset=True)
    finally:
        connection._opening = False
