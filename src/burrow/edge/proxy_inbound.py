"""The PROXY protocol on Burrow's own listeners (``--proxy-protocol``): a load balancer in
front of Burrow sends a v1 or v2 header first, naming the client it accepted.

Only a peer among ``--trusted-proxies`` is read for one, and from such a peer it is
required: a connection whose first bytes are not a header (domain/proxy_protocol.py's
strict parser), or that sends none within the timeout, is closed. Any other peer is served
as it is, its own address its client's, its bytes never read as a header. The client
address of the header is the connection's from then on: what admission (per-client caps),
rate limits, IP restrictions, X-Forwarded-For, agents and the traffic log see. LOCAL (v2)
and UNKNOWN (v1), a balancer's health checks, leave the balancer's own address.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from burrow.domain.forwarded import TrustedProxies
from burrow.domain.proxy_protocol import MAX_HEADER_BYTES, ProxyHeader, ProxyHeaderError, parse

from .relay import _RelayedTransport

log = logging.getLogger("burrow.edge")


def trusted_peer(transport: asyncio.BaseTransport, trusted: TrustedProxies) -> tuple[str, int] | None:
    """The transport's peer, if it is a trusted proxy (whose header is then required)."""
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or len(peer) < 2 or not trusted.trusts(str(peer[0])):
        return None
    return (str(peer[0]), int(peer[1]))


class HeaderReader:
    """The header at the start of a trusted proxy's connection, read as its bytes come."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> ProxyHeader | None:
        """The header once complete (its bytes removed from :attr:`buffer`); raises
        :class:`ProxyHeaderError` for anything but a header or the start of one."""
        self.buffer += data
        parsed = parse(bytes(self.buffer))
        if parsed is not None:
            del self.buffer[: parsed.length]
        return parsed


class ProxyProtocolGate(asyncio.Protocol):
    """A public listener's connection: from a trusted proxy, its header first; then the
    listener's own protocol, with the client's address as the transport's peer."""

    def __init__(
        self, inner: Callable[[], asyncio.Protocol], trusted: TrustedProxies, timeout: float
    ) -> None:
        self.inner = inner
        self.trusted = trusted
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = HeaderReader()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if trusted_peer(transport, self.trusted) is None:
            self._hand_over(self.transport, None, b"")  # a direct client: served as it is
            return
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._timed_out)

    def _timed_out(self) -> None:
        if self.transport is not None:
            log.debug("PROXY header timed out", extra={"fields": {"peer": self._peer_text()}})
            self.transport.abort()

    def _peer_text(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) else "unknown"

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            parsed = self.reader.feed(data)
        except ProxyHeaderError as error:
            log.debug(
                "PROXY header refused", extra={"fields": {"peer": self._peer_text(), "error": str(error)}}
            )
            self.transport.abort()
            return
        if parsed is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._hand_over(self.transport, parsed.source, bytes(self.reader.buffer))

    def _hand_over(self, transport: asyncio.Transport, client: tuple[str, int] | None, rest: bytes) -> None:
        protocol = self.inner()
        transport.set_protocol(protocol)
        shown = cast(asyncio.Transport, _RelayedTransport(transport, client)) if client else transport
        protocol.connection_made(shown)
        if rest and not transport.is_closing():
            protocol.data_received(rest)

    def eof_received(self) -> bool | None:
        return False  # closed before its header was whole

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def read_header(client: socket.socket, timeout: float) -> ProxyHeader:
    """The header at the start of an accepted socket's data, consumed and no more: what
    follows stays in the socket (for the HTTPS listener, which peeks at the ClientHello).
    Raises :class:`ProxyHeaderError`, or TimeoutError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    seen = -1
    async with asyncio.timeout(timeout):
        while True:
            ready = loop.create_future()
            loop.add_reader(client.fileno(), _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(client.fileno())
            data = client.recv(MAX_HEADER_BYTES, socket.MSG_PEEK)
            if not data:
                raise ProxyHeaderError("closed before its PROXY header was whole")
            parsed = parse(data)
            if parsed is not None:
                client.recv(parsed.length)  # buffered already: exactly the header's bytes
                return parsed
            if len(data) == seen:  # the bytes stay readable: wait for more without spinning
                await asyncio.sleep(0.01)
            seen = len(data)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
