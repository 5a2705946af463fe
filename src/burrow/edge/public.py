"""Public listeners: HTTP by Host, TLS by SNI (never decrypted), TCP by port.

Each accepted connection is matched to a tunnel, then spliced onto a new proxy stream to
the agent holding it, bytes passing both ways with half-close until both sides are done.
Connections are asyncio protocols: bytes move in the receive callbacks, without a task
switch per chunk; a task runs only while routing and to follow the agent's direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from burrow.domain.tunnels import Registry, Tunnel

from .flow import WriteFlow
from .muxado_streams import MuxStream
from .sniff import NEED_MORE, http_host, tls_server_name

log = logging.getLogger("burrow.edge")
SNIFF_TIMEOUT = 10.0
HTTP_SNIFF_LIMIT = 64 * 1024  # a request head longer than this gets a 400
TLS_SNIFF_LIMIT = 16 * 1024 + 5  # one TLS record holds the ClientHello
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class ProxyOpener(Protocol):
    async def __call__(self, tunnel: Tunnel, client_addr: str, proto: str) -> MuxStream | None: ...


def not_found_page(host: str) -> bytes:
    body = (
        "<!doctype html><title>Tunnel not found</title>"
        f"<h1>Tunnel {_escape(host)} not found</h1>"
        "<p>No agent is serving this name on this Burrow server.</p><p>ERR_NGROK_3200</p>\n"
    ).encode()
    head = (
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nNgrok-Error-Code: ERR_NGROK_3200\r\n\r\n"
    ).encode()
    return head + body


_BUSY = b"The tunnel's agent has too many open connections.\n"
BUSY_PAGE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    + f"Content-Length: {len(_BUSY)}\r\nConnection: close\r\n\r\n".encode()
    + _BUSY
)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class _HasExtraInfo(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def _peer(connection: _HasExtraInfo) -> str:
    peer = connection.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return "unknown:0"


class PublicConnection(asyncio.Protocol):
    """One public connection: its name sniffed (Host or SNI; TCP goes by port), then spliced
    onto a proxy stream to the agent, bytes passing both ways with half-close.

    Bytes from the client go onto the stream from the receive callback, as far as the
    stream's window allows; beyond that, reading pauses until the agent returns credit.
    Bytes from the agent come through :meth:`MuxStream.forward_to`, which writes to this
    object as to a stream writer.
    """

    def __init__(self, listeners: PublicListeners, kind: str, port: int = 0) -> None:
        self.listeners = listeners
        self.kind = kind  # "http", "tls" or "tcp"
        self.port = port
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.stream: MuxStream | None = None
        self._buffer = bytearray()  # sniffed, or received while the route was being found
        self._pending = bytearray()  # received, waiting for window credit
        self._client_ended = False
        self._holding = False  # reading paused: routing, no window, or the agent connection is full
        self._waiting = False  # for the agent connection to drain
        self._upstream_done = False
        self._lost = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._flow = WriteFlow()
        self._upstream_finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.listeners._connections.add(self)
        if self.kind == "tcp":
            self._start_route(None)
        else:
            self._timer = asyncio.get_running_loop().call_later(SNIFF_TIMEOUT, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self._send(data)
            return
        self._buffer += data
        if self._task is not None:
            return  # the route is being found; these bytes follow the sniffed ones
        if self.kind == "http":
            name = http_host(bytes(self._buffer))
            limit = HTTP_SNIFF_LIMIT
        else:
            name = tls_server_name(bytes(self._buffer))
            limit = TLS_SNIFF_LIMIT
        if name == NEED_MORE and len(self._buffer) <= limit:
            return
        self._start_route(None if name == NEED_MORE else name)

    def eof_received(self) -> bool:
        self._client_ended = True
        if self.stream is None and self._task is None:
            self.transport.close()  # ended before saying where it was going
        else:
            self._end_upstream_if_sent()
        return True  # keep our side open for the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.listeners._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.resume_writing()
        if not self._upstream_finished.done():
            self._upstream_finished.set_result(None)

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    # The writer forward_to() writes to ------------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("the public connection is closed")
        if self._flow.paused:
            await self._flow.drained()
            if self._lost:
                raise ConnectionResetError("the public connection is closed")

    # Client -> agent ------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        assert self.stream is not None
        if self._pending:
            self._pending += data
            return
        try:
            taken = self.stream.send_nowait(data)
        except ConnectionError:
            self.transport.abort()
            return
        if taken < len(data):
            self._pending += memoryview(data)[taken:]
            self._hold()  # until the agent returns credit: on_writable
        elif self.stream.connection.writing_paused:
            self._hold()
            self._wait_for_connection()

    def _resume_upstream(self) -> None:
        """Credit came back (or the agent connection drained): send what waits, read on."""
        stream = self.stream
        if stream is None or self._lost:
            return
        if self._pending:
            try:
                taken = stream.send_nowait(bytes(self._pending))
            except ConnectionError:
                self.transport.abort()
                return
            del self._pending[:taken]
        if self._pending:
            return
        if self._client_ended:
            self._end_upstream_if_sent()
        elif stream.connection.writing_paused:
            self._wait_for_connection()
        elif self._holding and not self.transport.is_closing():
            self._holding = False
            self.transport.resume_reading()

    def _hold(self) -> None:
        if not self._holding:
            self._holding = True
            self.transport.pause_reading()

    def _wait_for_connection(self) -> None:
        if not self._waiting and self.stream is not None:
            self._waiting = True

            def ready() -> None:
                self._waiting = False
                self._resume_upstream()

            self.stream.connection.call_when_writable(ready)

    def _end_upstream_if_sent(self) -> None:
        if self.stream is None or self._pending or self._upstream_done:
            return
        self._upstream_done = True
        with contextlib.suppress(Exception):
            self.stream.end_nowait()
        if not self._upstream_finished.done():
            self._upstream_finished.set_result(None)

    # Routing and the agent -> client direction ---------------------------------------

    def _start_route(self, name: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._hold()
        self._task = asyncio.get_running_loop().create_task(self._run(name))

    async def _run(self, name: str | None) -> None:
        stream: MuxStream | None = None
        try:
            stream = await self._open(name)
            if stream is None:
                return
            self.stream = stream
            stream.on_writable = self._resume_upstream
            first, self._buffer = bytes(self._buffer), bytearray()
            if first:
                self._send(first)
            self._resume_upstream()
            await stream.forward_to(self)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            await self._upstream_finished  # both directions are done
        except (ConnectionError, asyncio.CancelledError):
            if stream is not None and not self._upstream_done:
                stream.reset()
                stream = None
        finally:
            if stream is not None:
                stream.close()
            self.transport.close()

    async def _open(self, name: str | None) -> MuxStream | None:
        """The proxy stream for this connection, or None after answering why not."""
        registry = self.listeners.registry
        if self.kind == "http":
            if name is None:
                if self._buffer:
                    self.transport.write(BAD_REQUEST)
                return None
            tunnel = registry.http_tunnel(name)
            if tunnel is None and name in self.listeners.label_routes:
                tunnel = registry.labeled_tunnel(self.listeners.label_routes[name])
        elif self.kind == "tls":
            tunnel = registry.tls_tunnel(name) if name else None
        else:
            tunnel = registry.tcp_tunnel(self.port)
        stream = await self.listeners.open_proxy(tunnel, _peer(self.transport), self.kind) if tunnel else None
        if stream is None and self.kind == "http":
            # A tunnel that cannot take one more connection is busy, not missing.
            self.transport.write(not_found_page(str(name)) if tunnel is None else BUSY_PAGE)
        if stream is not None and self._lost:
            stream.reset()
            return None
        return stream


class PublicListeners:
    def __init__(
        self, registry: Registry, open_proxy: ProxyOpener, label_routes: dict[str, dict[str, str]]
    ) -> None:
        self.registry = registry
        self.open_proxy = open_proxy
        self.label_routes = {host.lower(): labels for host, labels in label_routes.items()}
        self._connections: set[PublicConnection] = set()

    def http_protocol(self) -> PublicConnection:
        return PublicConnection(self, "http")

    def tls_protocol(self) -> PublicConnection:
        return PublicConnection(self, "tls")

    def tcp_protocol(self, port: int) -> Callable[[], PublicConnection]:
        return lambda: PublicConnection(self, "tcp", port)

    async def close_all(self) -> None:
        tasks = []
        for connection in list(self._connections):
            connection.transport.abort()
            if connection._task is not None:
                connection._task.cancel()
                tasks.append(connection._task)
        await asyncio.gather(*tasks, return_exceptions=True)
