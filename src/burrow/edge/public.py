"""Public listeners: HTTP by Host, TLS by SNI (never decrypted), TCP by port.

Each accepted connection is matched to a tunnel, then spliced onto a new proxy stream to
the agent holding it, bytes passing both ways with half-close until both sides are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from burrow.domain.tunnels import Registry, Tunnel

from .muxado_streams import MuxStream
from .sniff import NEED_MORE, http_host, tls_server_name

log = logging.getLogger("burrow.edge")
CHUNK = 256 * 1024
SNIFF_TIMEOUT = 10.0


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


async def splice(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: MuxStream, first: bytes
) -> None:
    """Carry bytes both ways until both directions have ended."""

    async def upstream() -> None:
        if first:
            await stream.write(first)
        while data := await reader.read(CHUNK):
            await stream.write(data)
        await stream.write_eof()

    async def downstream() -> None:
        await stream.forward_to(writer)
        if writer.can_write_eof():
            writer.write_eof()

    tasks = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                for other in pending:
                    other.cancel()
                break
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        stream.close()
        with contextlib.suppress(Exception):
            writer.close()


async def _sniff(
    reader: asyncio.StreamReader, parse: Callable[[bytes], str | None], limit: int
) -> tuple[str | None, bytes]:
    buffer = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(limit), SNIFF_TIMEOUT)
        if not chunk:
            return None, buffer
        buffer += chunk
        name = parse(buffer)
        if name != NEED_MORE:
            return name, buffer


class PublicListeners:
    def __init__(
        self, registry: Registry, open_proxy: ProxyOpener, label_routes: dict[str, dict[str, str]]
    ) -> None:
        self.registry = registry
        self.open_proxy = open_proxy
        self.label_routes = {host.lower(): labels for host, labels in label_routes.items()}
        self._connections: set[asyncio.Task[None]] = set()

    def _track(
        self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._connections.add(task)
            try:
                await handler(reader, writer)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                if task is not None:
                    self._connections.discard(task)
                with contextlib.suppress(Exception):
                    writer.close()

        return tracked

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, first = await _sniff(reader, lambda data: http_host(data), 64 * 1024)
        if host is None:
            if first:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        tunnel = self.registry.http_tunnel(host)
        if tunnel is None and host in self.label_routes:
            tunnel = self.registry.labeled_tunnel(self.label_routes[host])
        stream = await self.open_proxy(tunnel, _peer(writer), "http") if tunnel else None
        if stream is None:
            # A tunnel that cannot take one more connection is busy, not missing.
            writer.write(not_found_page(host) if tunnel is None else BUSY_PAGE)
            await writer.drain()
            return
        await splice(reader, writer, stream, first)

    async def handle_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        name, first = await _sniff(reader, tls_server_name, 16 * 1024 + 5)
        tunnel = self.registry.tls_tunnel(name) if name else None
        stream = await self.open_proxy(tunnel, _peer(writer), "tls") if tunnel else None
        if stream is None:
            return  # no tunnel: close, as a TLS client expects nothing else from us
        await splice(reader, writer, stream, first)

    def tcp_handler(
        self, port: int
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            tunnel = self.registry.tcp_tunnel(port)
            stream = await self.open_proxy(tunnel, _peer(writer), "tcp") if tunnel else None
            if stream is not None:
                await splice(reader, writer, stream, b"")

        return self._track(handle)

    def http_handler(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        return self._track(self.handle_http)

    def tls_handler(self) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        return self._track(self.handle_tls)

    async def close_all(self) -> None:
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
