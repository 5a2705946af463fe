"""Write flow control for asyncio protocols: what pause_writing/resume_writing mean.

A transport calls ``pause_writing`` when its buffer passes the high-water mark and
``resume_writing`` when it drains (and a protocol should call it from ``connection_lost``
too, so nobody waits forever). Writers then either await :meth:`WriteFlow.drained` or,
in callback code, ask to be called back with :meth:`WriteFlow.call_when_drained`.
:class:`Upstream` is the other direction's flow: a client's bytes onto a proxy stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .muxado_streams import MuxStream


class WriteFlow:
    def __init__(self) -> None:
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._callbacks: list[Callable[[], None]] = []

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    async def drained(self) -> None:
        """Return once writing may go on."""
        if self.paused:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def call_when_drained(self, callback: Callable[[], None]) -> None:
        if self.paused:
            self._callbacks.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)


class Upstream:
    """A public connection's bytes onto its proxy stream: as far as the stream's window
    allows, the rest kept until the agent returns credit, and held while the agent
    connection's own transport is full. The owner pauses its reading while
    :attr:`blocked`: ``changed`` is called whenever that may have changed, ``failed``
    when the stream is gone (the owner aborts its client)."""

    def __init__(self, changed: Callable[[], None], failed: Callable[[], None]) -> None:
        self.stream: MuxStream | None = None
        self.ended = False  # the stream was half-closed (FIN) after everything was sent
        self.on_ended: Callable[[], None] | None = None
        self._pending = bytearray()
        self._waiting = False  # for the agent connection to drain
        self._end = False
        self._changed = changed
        self._failed = failed
        # Bytes wait for credit, or for the agent connection to drain (kept as a plain
        # attribute, read on every request: see _unblocked for when it changes back).
        self.blocked = False

    def _unblocked(self) -> None:
        self.blocked = bool(self._pending) or self._waiting

    def attach(self, stream: MuxStream) -> None:
        self.stream, self.ended, self._end = stream, False, False
        stream.on_writable = self.resume

    def detach(self) -> None:
        """Stop sending (the stream is closed or reset); what waits is dropped."""
        self.stream = None
        self._pending.clear()
        self._end = False
        self._unblocked()

    def send(self, data: bytes) -> None:
        stream = self.stream
        if stream is None or self.ended:
            return
        if self._pending:
            self._pending += data
            return
        try:
            taken = stream.send_nowait(data)
        except ConnectionError:
            self._failed()
            return
        if taken < len(data):
            self._pending += memoryview(data)[taken:]
            self.blocked = True
            self._changed()  # until the agent returns credit: resume()
        elif stream.connection.writing_paused:
            self._wait_for_connection()

    def resume(self) -> None:
        """Credit came back (or the agent connection drained): send what waits."""
        stream = self.stream
        if stream is None:
            return
        if self._pending:
            try:
                taken = stream.send_nowait(bytes(self._pending))
            except ConnectionError:
                self._failed()
                return
            del self._pending[:taken]
            if self._pending:
                return
            self._unblocked()
        if self._end:
            self._finish()
        elif stream.connection.writing_paused:
            self._wait_for_connection()
        else:
            self._changed()

    def end(self) -> None:
        """Half-close the stream once everything is sent."""
        self._end = True
        if not self._pending:
            self._finish()

    def _finish(self) -> None:
        if self.ended or self.stream is None:
            return
        self.ended = True
        with contextlib.suppress(Exception):
            self.stream.end_nowait()
        if self.on_ended is not None:
            self.on_ended()

    def _wait_for_connection(self) -> None:
        stream = self.stream
        if self._waiting or stream is None:
            return
        self._waiting = self.blocked = True
        self._changed()

        def ready() -> None:
            self._waiting = False
            self._unblocked()
            self.resume()

        stream.connection.call_when_writable(ready)


class ClientProtocol(asyncio.Protocol):
    """A public connection a proxy stream's answer is written to (the writer of
    ``MuxStream.forward_to``): its write flow, and ``drain`` that fails once it is gone.
    Subclasses set ``_lost`` in ``connection_lost`` and call ``_flow.resume()`` there."""

    def __init__(self) -> None:
        self._flow = WriteFlow()
        self._lost = False

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    async def drain(self) -> None:
        if self._lost:
            raise ConnectionResetError("the public connection is closed")
        if self._flow.paused:
            await self._flow.drained()
            if self._lost:
                raise ConnectionResetError("the public connection is closed")


def hang_up(transport: asyncio.Transport, scheme: str) -> None:
    """Close once what is written has gone out; on HTTPS, without waiting for the client's
    close_notify. A TLS close otherwise waits for it up to 30 s, reading and decrypting
    all the client still sends (a 96 MiB head would cost its whole 96 MiB) and holding
    the connection's slot; a client refused or timed out is owed neither."""
    transport.close()  # TLS: our answer and close_notify are handed to the socket
    if scheme == "https":
        transport.abort()


def end_tunnel(transport: asyncio.Transport, reset: bool, client_ended: bool) -> None:
    """The agent ended its side of an upgraded connection: cut it if it reset, else pass
    the half-close on (and close if the client had ended its side too)."""
    if reset:
        transport.abort()
    elif transport.can_write_eof():
        transport.write_eof()
        if client_ended:
            transport.close()
