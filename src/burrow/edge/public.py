"""Public listeners: TLS by SNI (never decrypted), TCP by port; HTTP and HTTPS are proxied
request by request (``http_proxy.py``).

Each accepted TLS/TCP connection is matched to a tunnel, then spliced onto a new proxy stream
to the agent holding it, bytes passing both ways with half-close until both sides are done.
Connections are asyncio protocols: bytes move in the receive callbacks, without a task
switch per chunk; a task runs only while routing and to follow the agent's direction.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from burrow.domain.limits import Admission, PublicLimits
from burrow.domain.tunnels import Registry, Tunnel

from . import relay, traffic
from .flow import ClientProtocol, Upstream
from .handoff import Handoff
from .http_proxy import HttpProxyConnection
from .jwt_check import JwksFetcher
from .muxado_streams import MuxConnection, MuxStream, StreamHolder
from .pages import not_found_page
from .peers import Peers
from .relay import Relaying, RelayRoutes
from .sniff import NEED_MORE, tls_server_name
from .traffic_phases import connection_env, on_tcp_connect

log = logging.getLogger("burrow.edge")
TLS_SNIFF_LIMIT = 16 * 1024 + 5  # one TLS record holds the ClientHello


class ProxyOpener(Protocol):
    async def __call__(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None: ...


class _HasExtraInfo(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def _peer(connection: _HasExtraInfo) -> str:
    peer = connection.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return "unknown:0"


class PublicConnection(ClientProtocol):
    """One public connection: its name sniffed (Host or SNI; TCP goes by port), then spliced
    onto a proxy stream to the agent, bytes passing both ways with half-close.

    Bytes from the client go onto the stream from the receive callback, as far as the
    stream's window allows; beyond that, reading pauses until the agent returns credit.
    Bytes from the agent come through :meth:`MuxStream.forward_to`, which writes to this
    object as to a stream writer.
    """

    def __init__(self, listeners: PublicListeners, kind: str, port: int = 0, relayed: bool = False) -> None:
        super().__init__()
        self.listeners = listeners
        self.kind = kind  # "tls" or "tcp"
        self.port = port
        self.relayed = relayed  # came from another node: never relayed again
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.stream: MuxStream | None = None
        self._buffer = bytearray()  # sniffed, or received while the route was being found
        self._up = Upstream(self._update_reading, lambda: self.transport.abort())  # client -> agent
        self._up.on_ended = self._upstream_ended
        self._client_ended = False
        self._holding = False  # reading paused: routing, no window, or the agent connection is full
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._upstream_finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._client_ip = ""
        self._admitted = False
        self._tunnel: Tunnel | None = None
        self._started = time.monotonic()
        self._bytes_in = 0
        self._bytes_out = 0

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client_ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if self.listeners.admission.admit(self._client_ip, self.kind) is not None:
            self.transport.close()
            return
        self._admitted = True
        self.listeners._connections.add(self)
        if self.kind == "tcp":
            self._start_route(None)
        else:
            self._timer = asyncio.get_running_loop().call_later(
                self.listeners.limits.head_timeout, self.transport.close
            )

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self._send(data)
            return
        self._buffer += data
        if self._task is not None:
            return  # the route is being found; these bytes follow the sniffed ones
        name = tls_server_name(bytes(self._buffer))
        if name == NEED_MORE and len(self._buffer) <= TLS_SNIFF_LIMIT:
            return
        self._start_route(None if name == NEED_MORE else name)

    def eof_received(self) -> bool:
        self._client_ended = True
        if self.stream is None and self._task is None:
            self.transport.close()  # ended before saying where it was going
        else:
            self._up.end()
        return True  # keep our side open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._admitted:
            self.listeners.admission.release(self._client_ip, self.kind)
            counts = self.listeners.traffic[self.kind]
            counts.bytes_in += self._bytes_in
            counts.bytes_out += self._bytes_out
            if self._tunnel is not None and traffic.enabled():
                traffic.record(
                    listener=self.kind,
                    tunnel=self._tunnel.id,
                    host=self._tunnel.hostname if self.kind == "tls" else None,
                    port=self.port or None,
                    bytes_in=self._bytes_in,
                    bytes_out=self._bytes_out,
                    duration_ms=round((time.monotonic() - self._started) * 1000, 3),
                    client=_peer(self.transport),
                )
        self.listeners._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.resume_writing()
        if not self._upstream_finished.done():
            self._upstream_finished.set_result(None)

    # The stream holder (muxado_streams.StreamHolder): a TCP/TLS stream is never given back.

    @property
    def client_address(self) -> str:
        return self._client_ip

    def holds(self, stream: MuxStream) -> bool:
        return self.stream is stream

    def stream_to_give_back(self) -> tuple[bool, float] | None:
        return None

    def give_back_stream(self) -> None:
        raise AssertionError("a TCP or TLS stream is never given back")

    # The writer forward_to() writes to ------------------------------------------------

    def write(self, data: bytes) -> None:
        self._bytes_out += len(data)
        self.transport.write(data)

    # Client -> agent ------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._bytes_in += len(data)
        self._up.send(data)

    def _update_reading(self) -> None:
        """Read while the bytes can go on: not while routing, nor while the stream is full."""
        hold = self.stream is None or self._up.blocked
        if hold and not self._holding:
            self._holding = True
            self.transport.pause_reading()
        elif not hold and self._holding and not self._lost and not self.transport.is_closing():
            self._holding = False
            self.transport.resume_reading()

    def _upstream_ended(self) -> None:
        if not self._upstream_finished.done():
            self._upstream_finished.set_result(None)

    # Routing and the agent -> client direction ---------------------------------------

    def _start_route(self, name: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._update_reading()
        self._task = asyncio.get_running_loop().create_task(self._run(name))

    async def _run(self, name: str | None) -> None:
        stream: MuxStream | None = None
        try:
            stream = await self._open(name)
            if stream is None:
                await self._relay_if_elsewhere(name)
                return
            self.stream = stream
            stream.holder = self
            self._up.attach(stream)
            first, self._buffer = bytes(self._buffer), bytearray()
            if first:
                self._send(first)
            if self._client_ended:
                self._up.end()
            self._up.resume()
            await stream.forward_to(self)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            await self._upstream_finished  # both directions are done
        except (ConnectionError, asyncio.CancelledError):
            if stream is not None and not self._up.ended:
                stream.reset()
                stream = None
        finally:
            if stream is not None:
                stream.close()
            self.transport.close()

    async def _relay_if_elsewhere(self, name: str | None) -> None:
        """If another node holds the name (or port), splice the connection to it; until it ends."""
        routes = self.listeners.relay_routes
        if self.relayed or routes is None or self._lost or (self.kind == "tls" and not name):
            return
        key = ("tls", name) if self.kind == "tls" and name else ("tcp", str(self.port))
        relay_addr = await routes.lookup(*key)
        if relay_addr is None:
            return
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def end() -> None:
            self.connection_lost(None)  # the counts, the timer: as if the client left
            if not ended.done():
                ended.set_result(None)

        peer = self.transport.get_extra_info("peername")
        client = [str(peer[0]), int(peer[1])] if isinstance(peer, tuple) else ["0.0.0.0", 0]
        header = {"listener": self.kind, "client": client, "port": self.port}
        first, self._buffer = bytes(self._buffer), bytearray()
        self._holding = False
        await self.listeners.relay_out(self.transport, first, header, relay_addr, end)
        await ended

    async def _open(self, name: str | None) -> MuxStream | None:
        """The proxy stream for this connection, or None after answering why not."""
        registry = self.listeners.registry
        if self.kind == "tls":
            tunnel = registry.tls_tunnel(name) if name else None
        else:
            tunnel = registry.tcp_tunnel(self.port)
        if tunnel is None:
            return None
        traffic = tunnel.policy.enforced
        if traffic is not None:
            peers = Peers.of(self.transport)
            if not on_tcp_connect(traffic, connection_env(peers, tunnel), peers.client_ip):
                return None
        self._tunnel = tunnel
        stream = await self.listeners.open_proxy(tunnel, _peer(self.transport), self.kind)
        if stream is not None and self._lost:
            stream.reset()
            return None
        if stream is not None:
            sock = self.transport.get_extra_info("sockname")
            server = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else ("0.0.0.0", 0)
            peer = self.transport.get_extra_info("peername")
            client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("0.0.0.0", 0)
            header = tunnel.policy.proxy_protocol_header(client, server)
            if header:
                stream.send_nowait(header)  # the window is empty: a header always fits
        return stream


class PublicListeners:
    def __init__(
        self,
        registry: Registry,
        open_proxy: ProxyOpener,
        label_routes: dict[str, dict[str, str]],
        limits: PublicLimits | None = None,
        relaying: Relaying | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.registry = registry
        self.open_proxy = open_proxy
        self.label_routes = {host.lower(): labels for host, labels in label_routes.items()}
        self.limits = limits or PublicLimits()
        self.admission = Admission(self.limits.max_connections, self.limits.max_connections_per_client)
        self.traffic = {listener: traffic.TrafficCounts() for listener in traffic.LISTENERS}
        self._connections: set[PublicConnection | HttpProxyConnection] = set()
        # With a relay, to and from other nodes (edge/relay.py).
        self.relay_routes: RelayRoutes | None = relaying.routes if relaying else None
        self.tcp_ports: range = relaying.tcp_ports if relaying else range(0)
        self.relay_context: ssl.SSLContext | None = relaying.client_context if relaying else None
        self.handoff = handoff  # in a worker: siblings take connections directly
        self.jwks = JwksFetcher()  # the issuers' keys for jwt-validation (the edge sets its own)
        self.acme_http: Callable[[str, str], Awaitable[str | None]] | None = None  # set with ACME on

    async def relay_out(
        self,
        client: asyncio.Transport,
        first: bytes,
        header: dict[str, Any],
        relay_addr: str,
        on_end: Callable[[], None],
    ) -> None:
        if self.handoff is not None and self.handoff.hand_over(client, first, header, relay_addr):
            on_end()
            return
        assert self.relay_context is not None
        await relay.relay_out(client, first, header, relay_addr, self.relay_context, on_end)

    def reclaim_stream(self, agent: MuxConnection, client_ip: str) -> bool:
        """Free a stream of ``agent``, at its stream cap, for a request from ``client_ip``.

        The stream goes back from the client address holding the most of the agent's
        streams, provided it holds more than ``client_ip`` does (so no address can keep
        the others out, and addresses holding as many take turns): the stream of a
        connection between requests, or of a request whose body is awaited and not yet
        answered, the one silent the longest. Streams doing work (answers under way, TCP
        and TLS connections) are never taken. Whether one was freed.
        """
        held: Counter[str] = Counter()
        candidates: list[tuple[str, float, StreamHolder]] = []
        for stream in agent.streams:  # at most the agent's cap: no scan of every connection
            holder = stream.holder
            if holder is None or not holder.holds(stream):
                continue
            held[holder.client_address] += 1
            state = holder.stream_to_give_back()
            if state is not None:
                candidates.append((holder.client_address, state[1], holder))
        mine = held[client_ip]
        fair = [c for c in candidates if held[c[0]] > mine]
        if not fair:
            return False
        _, _, connection = min(fair, key=lambda c: (-held[c[0]], c[1]))
        connection.give_back_stream()
        return True

    def relayed_protocol(self, listener: str, port: int, sni: str | None) -> asyncio.Protocol | None:
        """The protocol for a connection relayed from another node."""
        if listener == "http":
            return HttpProxyConnection(self, "http", relayed=True)
        if listener == "tls":
            return PublicConnection(self, "tls", relayed=True)
        if listener == "tcp" and port in self.tcp_ports:
            return PublicConnection(self, "tcp", port, relayed=True)
        return None

    def web_tunnel(self, scheme: str, host: str) -> Tunnel | None:
        """The tunnel serving ``host`` on the HTTP (or HTTPS) listener."""
        tunnel = self.registry.https_tunnel(host) if scheme == "https" else self.registry.http_tunnel(host)
        if tunnel is None and host in self.label_routes:
            tunnel = self.registry.labeled_tunnel(self.label_routes[host])
        return tunnel

    def not_found(self, scheme: str, host: str) -> bytes:
        """The 404 page for ``host`` on the ``scheme`` listener, saying where it is served
        when a plain HTTP request names an https-only endpoint."""
        elsewhere = self.registry.https_tunnel(host) if scheme == "http" else None
        return not_found_page(host, elsewhere.url if elsewhere is not None else None)

    def internal_tunnel(self, account_id: str, host: str) -> Tunnel | None:
        """The account's internal endpoint ``host`` on this node (forward-internal's target)."""
        return self.registry.internal_tunnel(account_id, host)

    @property
    def internal_elsewhere(self) -> bool:
        """Whether a forward-internal may go to another node (this one relays)."""
        return self.relay_routes is not None and self.relay_context is not None

    async def open_internal(self, relay_addr: str, header: dict[str, Any]) -> relay.RelayStream | None:
        """A relay connection to the node holding an internal endpoint (one request's)."""
        if self.relay_context is None:
            return None
        return await relay.open_relay_stream(relay_addr, header, self.relay_context)

    def internal_protocol(self, account_id: str, host: str, scheme: str, hops: int) -> HttpProxyConnection:
        """The protocol for a forward-internal another node relays: to ``account_id``'s
        internal endpoint ``host`` on this node only."""
        return HttpProxyConnection(self, scheme, relayed=True, internal=(account_id, host, hops))

    def http_protocol(self) -> HttpProxyConnection:
        return HttpProxyConnection(self, "http")

    def https_protocol(
        self, server_name: str | None, relayed_from: tuple[str, int] | None = None
    ) -> HttpProxyConnection:
        """An HTTPS connection's protocol; ``relayed_from``: the client of one another node relayed."""
        relayed = relayed_from is not None
        return HttpProxyConnection(self, "https", server_name, relayed=relayed, client=relayed_from)

    async def https_relay_target(self, server_name: str) -> str | None:
        """The relay address of the node serving ``server_name`` over HTTPS, if not this one."""
        if self.relay_routes is None or server_name in self.label_routes:
            return None
        if self.registry.https_tunnel(server_name) is not None:
            return None
        return await self.relay_routes.lookup("host", server_name)

    def tls_protocol(self) -> PublicConnection:
        return PublicConnection(self, "tls")

    def tcp_protocol(self, port: int) -> Callable[[], PublicConnection]:
        return lambda: PublicConnection(self, "tcp", port)

    async def drain(self, grace: float, poll: float = 0.05) -> None:
        """Wait up to ``grace`` seconds for the connections to finish what they carry,
        closing HTTP connections as soon as they sit between requests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._connections:
            for connection in list(self._connections):
                if isinstance(connection, HttpProxyConnection) and connection.idle:
                    connection.transport.close()
            if loop.time() >= deadline:
                return
            await asyncio.sleep(poll)

    async def close_all(self) -> None:
        tasks = []
        for connection in list(self._connections):
            connection.transport.abort()
            task = connection._task if isinstance(connection, PublicConnection) else connection._stream_task
            if task is not None:
                task.cancel()
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
