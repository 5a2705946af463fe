"""The relay between nodes: public traffic reaching a node that does not hold its tunnel.

Node A, finding a name bound on node B (a short-lived cached lookup of the cluster
registry), opens a mutual-TLS connection to B's relay listener (both ends present the
relay certificate from the cluster's CA and require the other's), sends one JSON line
(``{"listener": "http", "client": [ip, port], "name": ...}``) and then the client's bytes,
those already read first, and splices the two connections. B hands the connection to its
own public listener's protocol as if the client had connected to it, with the original
client address, so the endpoint's policies apply there. A relayed connection is never
relayed again: on B, a keep-alive request for a name B does not hold gets 421 and close.
HTTPS is relayed still encrypted; B hands it to its own HTTPS listener through a local
socket pair (:class:`LocalHandoff`), which terminates TLS with B's certificate.

A ``forward-internal`` to an internal endpoint B holds goes as one relay connection per
request (:class:`RelayStream`): the header ``{"listener": "internal", "account": ...,
"host": ..., "scheme": ..., "hops": ..., "client": ...}``, then the request as A's policy
left it. B routes it only to that account's internal endpoint (never a public name), runs
that endpoint's policy and answers; it never relays it further.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from burrow.store.cluster import ClusterRegistry

from .certs import relay_peer_ok
from .pages import page

log = logging.getLogger("burrow.edge")
MAX_HEADER = 4096
ROUTE_TTL = 1.0  # seconds a lookup is trusted: a moved name is relayed right within this
MAX_ROUTES = 10_000
LOOKUP_TIMEOUT = 1.0  # seconds a route lookup may take before the request is answered without it


@dataclass(frozen=True)
class Relaying:
    """What a node that relays to and from other nodes needs on its public listeners."""

    routes: RelayRoutes
    tcp_ports: range  # the TCP ports this node listens on (a relayed connection names one)
    client_context: ssl.SSLContext  # this node's relay certificate, to connect to another node


class RelayRoutes:
    """Which node's relay holds a name: the cluster registry, cached for :data:`ROUTE_TTL`,
    or until a notification (PostgreSQL) says a name was bound or freed: :meth:`forget`."""

    def __init__(self, cluster: ClusterRegistry) -> None:
        self.cluster = cluster
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._generation = 0  # a lookup racing forget() is not cached

    def forget(self) -> None:
        """Drop every cached route (may run in another thread: the database listener's)."""
        self._generation += 1
        self._cache.clear()

    async def lookup(self, kind: str, name: str) -> str | None:
        now = time.monotonic()
        key = (kind, name)
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < ROUTE_TTL:
            return hit[1]
        generation = self._generation
        try:
            found = await asyncio.wait_for(asyncio.to_thread(self.cluster.route, kind, name), LOOKUP_TIMEOUT)
        except Exception as error:  # the database is away or slow: nothing to relay to
            log.warning(
                "relay lookup failed", extra={"fields": {"error": str(error) or type(error).__name__}}
            )
            found = None
        if len(self._cache) >= MAX_ROUTES:
            self._cache.clear()
        if generation == self._generation:
            self._cache[key] = (now, found)
        return found


class _Half(asyncio.Protocol):
    """One side of a splice: what it receives goes to the other side's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Half | None = None
        self.early = bytearray()  # received before the other side was there
        self.lost = False
        self.on_lost: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.early += data
            if len(self.early) > 1 << 20 and self.transport is not None:
                self.transport.pause_reading()
            return
        other.transport.write(data)

    def eof_received(self) -> bool:
        other = self.other
        if other is not None and other.transport is not None and other.transport.can_write_eof():
            other.transport.write_eof()
        return True  # TLS cannot half-close: wait for the other side to end

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()


class RelayOut(Protocol):
    """What splices a public connection to another node: the public listeners'
    ``relay_out``, which calls :func:`relay_out` with the cluster's TLS context."""

    async def relay_out(
        self,
        client: asyncio.Transport,
        first: bytes,
        header: dict[str, Any],
        relay_addr: str,
        on_end: Callable[[], None],
    ) -> None: ...


async def relay_out(
    client: asyncio.Transport,
    first: bytes,
    header: dict[str, Any],
    relay_addr: str,
    context: ssl.SSLContext,
    on_end: Callable[[], None],
    connect_timeout: float = 5.0,
) -> None:
    """Take over ``client`` and splice it to the node at ``relay_addr``."""
    near = _Half()
    client.pause_reading()
    client.set_protocol(near)
    near.connection_made(client)
    near.on_lost = on_end
    host, _, port = relay_addr.rpartition(":")
    loop = asyncio.get_running_loop()
    far = _Half()
    try:
        await asyncio.wait_for(
            loop.create_connection(
                lambda: far, host.strip("[]"), int(port), ssl=context, server_hostname=host
            ),
            connect_timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as error:
        log.warning("relay connection failed", extra={"fields": {"node": relay_addr, "error": str(error)}})
        if header.get("listener") == "http":
            client.write(_UNREACHABLE)
        client.close()
        return
    assert far.transport is not None
    if not relay_peer_ok(far.transport.get_extra_info("peercert")) or near.lost:
        far.transport.abort()
        client.close()
        return
    far.transport.write(json.dumps(header).encode() + b"\n" + first)
    near.other, far.other = far, near
    if near.early:
        far.transport.write(bytes(near.early))
        near.early.clear()
    client.resume_reading()


class LocalHandoff(_Half):
    """A relayed connection handed to a listener of this node through a socket pair.

    The HTTPS listener takes the other end as a connection of its own (it reads the
    server name, picks the certificate, terminates TLS), with the client's address."""

    def __init__(self, accept: Callable[[socket.socket, tuple[str, int]], None]) -> None:
        super().__init__()
        self._accept = accept
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("0.0.0.0", 0)
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):
            end.setblocking(False)
        self._accept(theirs, client)
        self._task = asyncio.get_running_loop().create_task(self._connect(ours))

    async def _connect(self, sock: socket.socket) -> None:
        assert self.transport is not None
        far = _Half()
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: far, sock)
        except OSError:
            sock.close()
            self.transport.close()
            return
        assert far.transport is not None
        if self.lost:
            far.transport.close()
            return
        far.on_lost = self.transport.close
        self.other, far.other = far, self
        for source, target in ((self, far), (far, self)):
            if source.early and target.transport is not None and source.transport is not None:
                target.transport.write(bytes(source.early))
                source.early.clear()
                source.transport.resume_reading()


_UNREACHABLE = page(
    502, "Bad Gateway", "ERR_NGROK_90502", "The edge node holding this tunnel cannot be reached."
)


INTERNAL_UNREACHABLE = page(
    502, "Bad Gateway", "ERR_NGROK_90502", "The edge node holding this internal endpoint cannot be reached."
)


class _RelayedTransport:
    """The relay connection, presented to a public protocol as the client's own."""

    _BOUND = ("write", "writelines", "close", "abort", "is_closing", "pause_reading", "resume_reading")

    def __init__(self, transport: asyncio.Transport, peername: tuple[str, int]) -> None:
        self._transport = transport
        self._peername = peername
        for name in self._BOUND:  # the hot methods without a __getattr__ per call
            setattr(self, name, getattr(transport, name))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class PublicProtocols(Protocol):
    def relayed_protocol(self, listener: str, port: int, sni: str | None) -> asyncio.Protocol | None: ...

    def internal_protocol(self, account_id: str, host: str, scheme: str, hops: int) -> asyncio.Protocol: ...


class RelayInbound(asyncio.Protocol):
    """A connection from another node: its header, then handed to a public protocol."""

    def __init__(
        self,
        listeners: PublicProtocols,
        header_timeout: float,
        https: Callable[[socket.socket, tuple[str, int]], None] | None,
    ) -> None:
        self.listeners = listeners
        self.https = https  # the HTTPS listener's door for connections still encrypted
        self.header_timeout = header_timeout
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not relay_peer_ok(transport.get_extra_info("peercert")):
            self.transport.abort()
            return
        self._timer = asyncio.get_running_loop().call_later(self.header_timeout, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self._buffer += data
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER:
                self.transport.abort()
            return
        if self._timer is not None:
            self._timer.cancel()
        try:
            header = json.loads(bytes(self._buffer[:end]))
            listener = str(header["listener"])
            ip, port = header["client"]
            client = (str(ip), int(port))
            if listener == "https":  # this node's HTTPS listener terminates it, with its certificate
                protocol: asyncio.Protocol | None = (
                    LocalHandoff(self.https) if self.https is not None else None
                )
            elif listener == "internal":  # a forward-internal: only to this account's internal endpoint
                scheme = str(header["scheme"])
                if scheme not in ("http", "https"):
                    raise ValueError(scheme)
                protocol = self.listeners.internal_protocol(
                    str(header["account"]), str(header["host"]), scheme, int(header["hops"])
                )
            else:
                protocol = self.listeners.relayed_protocol(
                    listener, int(header.get("port", 0)), header.get("sni")
                )
        except (ValueError, KeyError, TypeError):
            protocol = None
        if protocol is None:
            self.transport.abort()
            return
        rest = bytes(self._buffer[end + 1 :])
        self._buffer.clear()
        self.transport.set_protocol(protocol)
        protocol.connection_made(cast(asyncio.Transport, _RelayedTransport(self.transport, client)))
        if rest:
            protocol.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class RelayStream(asyncio.Protocol):
    """A relay connection carrying one forward-internal request to the node holding the
    internal endpoint, presented to the HTTP proxy as a proxy stream to an agent (what
    :class:`~burrow.edge.flow.Upstream` and ``forward_to`` use of a ``MuxStream``): the
    request goes out as written, the other node's answer comes back to the writer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.connection = self  # Upstream asks the stream's connection whether writing is paused
        self.writing_paused = False
        self.on_writable: Callable[[], None] | None = None
        self.holder: Any = None
        self._writable: list[Callable[[], None]] = []
        self._early = bytearray()
        self._eof = False
        self._lost = False
        self._sink: Any = None
        self._done: asyncio.Future[None] | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            self._early += data
            return
        try:
            sink.write(data)
        except Exception as error:
            self._end(ConnectionResetError(str(error)))
            return
        if sink.transport.get_write_buffer_size() and self.transport is not None:
            self.transport.pause_reading()  # until the client takes it
            asyncio.get_running_loop().create_task(self._drain(sink))

    async def _drain(self, sink: Any) -> None:
        try:
            await sink.drain()
        except Exception as error:
            self._end(ConnectionResetError(str(error)))
            return
        if self.transport is not None and not self._lost:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._end(None if self._eof else ConnectionResetError("the relay connection was lost"))
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        callbacks, self._writable = self._writable, []
        for callback in callbacks:
            callback()

    def _end(self, error: Exception | None) -> None:
        done = self._done
        if done is not None and not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

    # What the proxy uses of a stream
    def call_when_writable(self, callback: Callable[[], None]) -> None:
        if self.writing_paused:
            self._writable.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)

    def send_nowait(self, data: bytes | memoryview) -> int:
        if self._lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the relay connection is closed")
        self.transport.write(bytes(data))
        return len(data)

    def end_nowait(self) -> None:
        pass  # TLS cannot half-close: the request's own framing says where it ends

    async def forward_to(self, writer: Any) -> None:
        """Write the other node's answer to ``writer`` until it closes the connection."""
        self._done = asyncio.get_running_loop().create_future()
        if self._early:
            writer.write(bytes(self._early))
            self._early.clear()
        if self._lost:
            self._end(None if self._eof else ConnectionResetError("the relay connection was lost"))
        self._sink = writer
        try:
            await self._done
        finally:
            self._sink = None

    def reset(self, code: Any = None) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_relay_stream(
    relay_addr: str, header: dict[str, Any], context: ssl.SSLContext, connect_timeout: float = 5.0
) -> RelayStream | None:
    """A relay connection to ``relay_addr`` with ``header`` sent, or None if it cannot be had."""
    host, _, port = relay_addr.rpartition(":")
    stream = RelayStream()
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(
                lambda: stream, host.strip("[]"), int(port), ssl=context, server_hostname=host
            ),
            connect_timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as error:
        log.warning("relay connection failed", extra={"fields": {"node": relay_addr, "error": str(error)}})
        return None
    assert stream.transport is not None
    if not relay_peer_ok(stream.transport.get_extra_info("peercert")):
        stream.transport.abort()
        return None
    stream.transport.write(json.dumps(header).encode() + b"\n")
    return stream
