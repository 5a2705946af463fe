"""muxado over asyncio: a thin driver for :mod:`muxado_protocol` on a transport.

The connection is the transport's protocol and feeds what arrives to the state machine;
streams are read and written by whoever holds them. Backpressure is the protocol's: a
stream's reader that stops reading returns no window credit, so its peer stops sending;
a writer waits for credit and for the transport to drain.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import socket
import ssl as ssl_module
from collections.abc import Callable
from typing import Any, Protocol, cast

from . import muxado_protocol as mux
from .flow import WriteFlow


class _QuickAck:
    """Re-arm TCP_QUICKACK after each read, where the platform has it.

    Agents may not disable Nagle's algorithm, so a small frame they write after another
    waits for our ACK; Linux delays ACKs up to 40 ms. Acking at once removes that stall
    from every small request. The option is not sticky, hence once per read.
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        option: int | None = getattr(socket, "TCP_QUICKACK", None)
        self._option = option or 0
        self._socket: socket.socket | None = None
        raw = transport.get_extra_info("socket")
        if option is not None and raw is not None:
            # Our own handle on the socket: uvloop's socket wrapper makes a new socket
            # object (and system calls) for every setsockopt. The duplicate descriptor
            # keeps the socket open, so close() must follow the transport's close.
            with contextlib.suppress(OSError, AttributeError):
                self._socket = socket.socket(fileno=os.dup(raw.fileno()))

    def arm(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.setsockopt(socket.IPPROTO_TCP, self._option, 1)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class StreamResetError(ConnectionError):
    """Raised to a stream's reader or writer: the stream was reset (by the peer, by us, or
    because the connection ended). The peer's RST itself is the :class:`mux.StreamReset` event."""


class Writer(Protocol):
    """Where :meth:`MuxStream.forward_to` writes: an ``asyncio.StreamWriter`` or alike."""

    @property
    def transport(self) -> asyncio.WriteTransport: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class StreamHolder(Protocol):
    """The public connection a proxy stream carries, as the agent's stream table sees it
    (``PublicListeners.reclaim_stream`` frees streams of an agent at its cap)."""

    @property
    def client_address(self) -> str:
        """The client's IP address: streams are shared fairly between addresses."""
        ...

    def holds(self, stream: MuxStream) -> bool:
        """Whether ``stream`` is the one this connection uses now."""
        ...

    def stream_to_give_back(self) -> tuple[bool, float] | None:
        """(whether the client connection goes too, silent since) if the stream could go
        back to its agent now; None while it does work."""
        ...

    def give_back_stream(self) -> None: ...


class MuxStream:
    def __init__(self, connection: MuxConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._reset: int | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        # forward_to(): received data goes straight to this writer, without a task switch.
        self._sink: Writer | None = None
        self._sink_done: asyncio.Future[None] | None = None
        self._sink_credit = mux.DrainCredit()
        # Called when the peer returns window credit (see send_nowait).
        self.on_writable: Callable[[], None] | None = None
        self.holder: StreamHolder | None = None  # the public connection a proxy stream carries

    # Reading ------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            self._chunks.append(data)
            self._buffered += len(data)
            self._readable.set()
            return
        # forward_to(): straight to the writer.
        try:
            sink.write(data)
        except Exception as error:  # the public side is gone: stop the stream
            if self._sink_done is not None and not self._sink_done.done():
                self._sink_done.set_exception(ConnectionResetError(str(error)))
            return
        consumed, start_drain = self._sink_credit.written(
            len(data), bool(sink.transport.get_write_buffer_size())
        )
        self.connection._consumed(self.stream_id, consumed)
        if start_drain:
            asyncio.get_running_loop().create_task(self._drain_sink(sink))

    def _feed_eof(self) -> None:
        self._eof = True
        self._readable.set()
        if self._sink_done is not None and not self._sink_credit.draining and not self._sink_done.done():
            self._sink_done.set_result(None)

    def _feed_reset(self, code: int) -> None:
        self._reset = code
        self._readable.set()
        self._writable.set()
        if self._sink_done is not None and not self._sink_done.done():
            self._sink_done.set_exception(StreamResetError(f"stream {self.stream_id} reset (code {code})"))

    async def forward_to(self, writer: Writer) -> None:
        """Write everything received to ``writer`` until the peer ends the stream.

        Data is written from the connection's receive callback, and window credit goes
        back only once the writer has taken it (at once if the socket accepted it all,
        else after the writer drains), so a slow reader slows the agent, not our memory.
        """
        while self._chunks:
            data = await self.read()
            writer.write(data)
            await writer.drain()
        if self._eof:
            return
        if self._reset is not None:
            raise StreamResetError(f"stream {self.stream_id} reset (code {self._reset})")
        self._sink, self._sink_done = writer, asyncio.get_running_loop().create_future()
        try:
            await self._sink_done
        finally:
            self._sink = None

    async def _drain_sink(self, writer: Writer) -> None:
        try:
            await writer.drain()
        except Exception as error:
            self._sink_credit.failed()
            if self._sink_done is not None and not self._sink_done.done():
                self._sink_done.set_exception(ConnectionResetError(str(error)))
            return
        self.connection._consumed(self.stream_id, self._sink_credit.drained())
        if self._eof and self._sink_done is not None and not self._sink_done.done():
            self._sink_done.set_result(None)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered if -1); b"" once the peer has ended the stream."""
        while not self._chunks:
            if self._eof:
                return b""
            if self._reset is not None:
                raise StreamResetError(f"stream {self.stream_id} reset (code {self._reset})")
            self._readable.clear()
            await self._readable.wait()
        chunks = self._chunks
        if n < 0 or n >= self._buffered:
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts = []
            wanted = n
            while wanted:
                chunk = chunks.popleft()
                if len(chunk) > wanted:
                    chunks.appendleft(chunk[wanted:])
                    chunk = chunk[:wanted]
                parts.append(chunk)
                wanted -= len(chunk)
            data = b"".join(parts)
        self._buffered -= len(data)
        self.connection._consumed(self.stream_id, len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < n:
            data = await self.read(n - len(chunks))
            if not data:
                raise asyncio.IncompleteReadError(bytes(chunks), n)
            chunks += data
        return bytes(chunks)

    async def read_all(self, limit: int) -> bytes:
        """Everything until the peer ends the stream; at most ``limit`` bytes."""
        chunks = bytearray()
        while data := await self.read():
            chunks += data
            if len(chunks) > limit:
                raise ValueError(f"more than {limit} bytes")
        return bytes(chunks)

    # Writing ------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while True:
            taken = self.send_nowait(view)
            view = view[taken:]
            if not view:
                break
            if taken == 0:
                self._writable.clear()
                await self._writable.wait()
        await self.connection._drain()

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Queue as much of ``data`` as the window allows, without waiting; how much was taken.

        For callers driven by callbacks: when it takes less than all, wait for
        :attr:`on_writable`. :attr:`MuxConnection.writing_paused` says whether the
        connection's own transport wants them to slow down.
        """
        if self._reset is not None:
            raise StreamResetError(f"stream {self.stream_id} reset (code {self._reset})")
        connection = self.connection
        if connection.closed:
            raise ConnectionResetError("the muxado connection is closed")
        try:
            taken = connection.protocol.send_data(self.stream_id, data)  # as much as the window allows
        except mux.LocalProtocolError as error:
            raise ConnectionResetError(str(error)) from None
        connection._flush()
        return taken

    def end_nowait(self) -> None:
        """Half-close (FIN) without waiting for the transport."""
        self.connection.protocol.end_stream(self.stream_id)
        self.connection._flush()

    async def write_eof(self) -> None:
        self.end_nowait()
        await self.connection._drain()

    def reset(self, code: mux.ErrorCode = mux.ErrorCode.CANCELLED) -> None:
        if self._reset is None:
            self._feed_reset(int(code))
        self.connection.protocol.reset_stream(self.stream_id, code)
        self.connection._flush()
        self.connection._streams.pop(self.stream_id, None)

    def close(self) -> None:
        """Done with the stream both ways: half-close, and drop it without waiting."""
        if self.connection.protocol.is_open(self.stream_id):
            self.connection.protocol.end_stream(self.stream_id)
            self.connection._flush()
        self.connection._streams.pop(self.stream_id, None)


class MuxConnection(asyncio.Protocol):
    """One muxado session: the protocol of its transport, feeding received bytes straight
    to the state machine (no StreamReader between them: one copy and one task switch less
    per read on the tunnel's data path).

    Create it with ``loop.create_server(lambda: MuxConnection(...), ssl=...)`` or
    :meth:`connect`; ``on_connected`` runs once the transport (and TLS) is up.
    """

    def __init__(
        self,
        client_side: bool,
        max_streams: int = 1024,
        accept_backlog: int = 128,
        on_connected: Callable[[MuxConnection], None] | None = None,
    ) -> None:
        self.protocol = mux.Connection(client_side=client_side, max_streams=max_streams)
        self.transport: asyncio.Transport | None = None
        self._streams: dict[int, MuxStream] = {}
        self._accepted: asyncio.Queue[MuxStream | None] = asyncio.Queue(accept_backlog)
        self.closed = False
        self.close_reason: str = ""
        self.done = asyncio.Event()
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self._on_connected = on_connected
        self._quickack: _QuickAck | None = None
        self._flow = WriteFlow()
        self._lost: asyncio.Future[None] = self._loop.create_future()

    @classmethod
    async def connect(
        cls, host: str, port: int, ssl: ssl_module.SSLContext | None = None, **options: Any
    ) -> MuxConnection:
        """A client-side session over a new connection to ``host:port``."""
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: cls(client_side=True, **options), host, port, ssl=ssl
        )
        return connection

    # Public API ---------------------------------------------------------------------

    async def accept_stream(self) -> MuxStream | None:
        """The next stream the peer opens; None once the connection is over."""
        if self.closed and self._accepted.empty():
            return None
        stream = await self._accepted.get()
        if stream is None:
            self._accepted.put_nowait(None)  # wake any other acceptor too
        return stream

    def open_stream(self) -> MuxStream:
        if self.closed:
            raise ConnectionResetError("the muxado connection is closed")
        stream_id = self.protocol.open_stream()
        stream = self._streams[stream_id] = MuxStream(self, stream_id)
        return stream

    @property
    def open_stream_count(self) -> int:
        return self.protocol.open_stream_count

    @property
    def streams(self) -> list[MuxStream]:
        """The streams in use (not closed nor reset by us)."""
        return list(self._streams.values())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default) if self.transport else default

    async def close(self, code: mux.ErrorCode = mux.ErrorCode.NONE, message: str = "") -> None:
        """Send GOAWAY, close the transport and wake everything waiting on it."""
        if not self.protocol.closed:
            self.protocol.go_away(code, message)
        self._write_out()
        self._shutdown(message or "closed")
        if self.transport is not None and not self._lost.done():
            self.transport.close()  # what is buffered (the GOAWAY) is sent first
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), 2)
            except TimeoutError:
                self.transport.abort()

    # asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TLS transport is no subclass
        self._quickack = _QuickAck(transport)
        # Data that came with the TLS handshake may have been received already (start_tls
        # hands it over before it returns the transport): send what it queued, or hang up
        # if it broke the protocol.
        self._write_out()
        if self.closed:
            self.transport.close()
            return
        if self._on_connected is not None:
            self._on_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._quickack is not None:
            self._quickack.arm()
        for event in self.protocol.receive_data(data):
            self._dispatch(event)
        if self.protocol.closed:  # the peer broke the protocol: GOAWAY, then hang up
            self._write_out()
            self._shutdown("protocol error")
            if self.transport is not None:
                self.transport.close()
        else:
            self._write_out()  # credit and replies queued while dispatching leave now

    def eof_received(self) -> bool | None:
        self._shutdown("peer closed the connection")
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._quickack is not None:
            self._quickack.close()
        self._shutdown(str(exc) if exc else "peer closed the connection")
        if not self._lost.done():
            self._lost.set_result(None)
        self.resume_writing()

    def pause_writing(self) -> None:
        self._flow.pause()

    def resume_writing(self) -> None:
        self._flow.resume()

    @property
    def writing_paused(self) -> bool:
        """The transport's buffer is over its high-water mark: callers should hold off."""
        return self._flow.paused

    def call_when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transport's buffer drains (or the connection ends)."""
        self._flow.call_when_drained(callback)

    # Internals ----------------------------------------------------------------------

    def _consumed(self, stream_id: int, size: int) -> None:
        if size and self.protocol.acknowledge_received_data(stream_id, size):
            self._flush()

    def _flush(self) -> None:
        """Write what the protocol queued, once per event-loop turn.

        Frames queued by many streams in the same turn leave as one write: one TLS record
        and one system call instead of one per frame.
        """
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._flush_scheduled = False
        if self.transport is None:
            return  # not connected yet: connection_made sends what is queued
        out = self.protocol.data_to_send()
        if out and not self.transport.is_closing():
            self.transport.write(out)

    async def _drain(self) -> None:
        if self.transport is None or self.transport.is_closing() or self._lost.done():
            self._shutdown("the transport is closed")
            raise ConnectionResetError("the transport is closed")
        if self._flow.paused:
            await self._flow.drained()
            if self._lost.done():
                raise ConnectionResetError("the transport is closed")

    def _dispatch(self, event: mux.Event) -> None:
        if isinstance(event, mux.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._feed(event.data)
        elif isinstance(event, mux.StreamOpened):
            stream = self._streams[event.stream_id] = MuxStream(self, event.stream_id)
            try:
                self._accepted.put_nowait(stream)
            except asyncio.QueueFull:
                self._streams.pop(event.stream_id)
                self.protocol.reset_stream(event.stream_id, mux.ErrorCode.ACCEPT_QUEUE_FULL)
        elif isinstance(event, mux.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._feed_eof()
        elif isinstance(event, mux.StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._feed_reset(event.code)
        elif isinstance(event, mux.WindowUpdated):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._writable.set()
                if stream.on_writable is not None:
                    stream.on_writable()
        elif isinstance(event, mux.ConnectionTerminated):
            self.close_reason = event.message.decode(errors="replace")
        elif isinstance(event, mux.ProtocolViolation):
            self.close_reason = event.message

    def _shutdown(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        for stream in list(self._streams.values()):
            stream._feed_reset(int(mux.ErrorCode.SESSION_CLOSED))
        self._streams.clear()
        while True:
            try:
                self._accepted.put_nowait(None)
                break
            except asyncio.QueueFull:
                self._accepted.get_nowait()
        self.done.set()
