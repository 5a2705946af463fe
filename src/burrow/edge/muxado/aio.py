"""muxado over asyncio: a thin driver for :class:`~.session.Session`.

One task reads the transport and feeds the session; whoever holds a stream reads and
writes it. All protocol decisions are the session's; this module only moves bytes and
wakes waiters. Memory stays bounded by the protocol itself: a stream buffers at most its
256 KiB window (the session ends a peer that sends more), credit goes back only as the
application reads, and a writer waits for credit and for the transport to drain.

Use one reader and one writer per stream at a time (writes are serialised anyway).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Final

from .frames import DEFAULT_MAX_FRAME_SIZE, ErrorCode
from .session import (
    DEFAULT_MAX_STREAMS,
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    Session,
    SessionClosedError,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)

READ_CHUNK: Final = 256 * 1024
# Replies the reader generates (credit, RSTs) wait for the peer to read them once this
# much is unsent; below it, reading never blocks on writing (which could deadlock two
# peers writing to each other).
READER_WRITE_BACKLOG: Final = 1024 * 1024


class ConnectionClosedError(ConnectionError):
    """The muxado connection is over."""


class StreamResetError(ConnectionResetError):
    """The stream was reset (by the peer, by us, or by the peer's GOAWAY)."""

    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(f"stream {stream_id} was reset ({_code_name(code)})")
        self.stream_id = stream_id
        self.code = code


class MuxadoStream:
    def __init__(self, connection: MuxadoConnection, stream_id: int) -> None:
        self.connection = connection
        self.stream_id = stream_id
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._reset_code: int | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._write_lock = asyncio.Lock()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read: at most the 256 KiB window."""
        return self._buffered

    # Reading --------------------------------------------------------------------------

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (everything buffered if negative); b"" once the peer ended."""
        if n == 0:
            return b""
        while not self._chunks:
            self._raise_if_reset()
            if self._eof:
                return b""
            self.connection._raise_if_closed()
            self._readable.clear()
            await self._readable.wait()
        data = self._take(n)
        self.connection._consumed(self.stream_id, len(data))
        return data

    async def readexactly(self, n: int) -> bytes:
        parts: list[bytes] = []
        missing = n
        while missing > 0:
            chunk = await self.read(missing)
            if not chunk:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(chunk)
            missing -= len(chunk)
        return b"".join(parts)

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        if n < 0 or n >= self._buffered:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts: list[bytes] = []
            missing = n
            while missing:
                chunk = chunks.popleft()
                if len(chunk) > missing:
                    chunks.appendleft(chunk[missing:])
                    chunk = chunk[:missing]
                parts.append(chunk)
                missing -= len(chunk)
            data = b"".join(parts)
        self._buffered -= len(data)
        return data

    # Writing --------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Send all of ``data``, waiting for window credit and for the transport to drain."""
        connection = self.connection
        session = connection.session
        view = memoryview(data)
        async with self._write_lock:
            while True:
                self._raise_if_reset()
                connection._raise_if_closed()
                window = session.outbound_window(self.stream_id)
                try:
                    taken = session.send_data(self.stream_id, view[:window])
                except StreamClosedError as error:
                    raise BrokenPipeError(str(error)) from None
                except SessionClosedError as error:
                    raise ConnectionClosedError(str(error)) from None
                view = view[taken:]
                await connection._drain()
                if not view:
                    return
                # No await between this check and the wait, or credit could slip past.
                if session.outbound_window(self.stream_id) == 0:
                    self._writable.clear()
                    await self._writable.wait()

    async def write_eof(self) -> None:
        """Half-close: we send nothing more; the peer's reads end."""
        async with self._write_lock:
            self._raise_if_reset()
            self.connection._raise_if_closed()
            try:
                self.connection.session.end_stream(self.stream_id)
            except StreamClosedError as error:
                raise BrokenPipeError(str(error)) from None
            except SessionClosedError as error:
                raise ConnectionClosedError(str(error)) from None
            self.connection._forget_if_gone(self.stream_id)
            await self.connection._drain()

    def reset(self, code: ErrorCode = ErrorCode.CANCELLED) -> None:
        """Abort both directions at once; buffered data is dropped."""
        self.connection.session.reset_stream(self.stream_id, code)
        self.connection._flush()
        self.connection._forget_if_gone(self.stream_id)
        if self._reset_code is None:
            self._on_reset(code)

    def close(self) -> None:
        """Done with the stream: FIN if not yet sent, and read no more.

        Whatever the peer still sends is refused (RST STREAM_CLOSED) rather than buffered.
        """
        self.connection.session.close_stream(self.stream_id)
        self.connection._flush()
        self.connection._forget_if_gone(self.stream_id)
        self._chunks.clear()
        self._buffered = 0
        self._eof = True
        self._readable.set()
        self._writable.set()

    # Fed by the connection ------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self._readable.set()

    def _on_eof(self) -> None:
        self._eof = True
        self._readable.set()

    def _on_reset(self, code: int) -> None:
        self._reset_code = code
        self._chunks.clear()
        self._buffered = 0
        self._readable.set()
        self._writable.set()

    def _wake(self) -> None:
        self._readable.set()
        self._writable.set()

    def _raise_if_reset(self) -> None:
        if self._reset_code is not None:
            raise StreamResetError(self.stream_id, self._reset_code)


class MuxadoConnection:
    """A muxado session over an asyncio (reader, writer) pair; starts reading at once."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client_side: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
    ) -> None:
        self.session = Session(client_side, max_frame_size=max_frame_size, max_streams=max_streams)
        self._reader = reader
        self._writer = writer
        self._streams: dict[int, MuxadoStream] = {}
        # Bounded by the session's max_streams: the peer cannot open more than that.
        self._accepted: asyncio.Queue[MuxadoStream | None] = asyncio.Queue()
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.closed = False
        self.close_reason = ""
        self.remote_goaway: GoAwayReceived | None = None
        self._done = asyncio.Event()
        self._read_task = self._loop.create_task(self._read_loop())

    # Public API -----------------------------------------------------------------------

    async def accept_stream(self) -> MuxadoStream | None:
        """The next stream the peer opens; None once the connection is over."""
        stream = await self._accepted.get()
        if stream is None:
            self._accepted.put_nowait(None)  # for every other acceptor too
        return stream

    def open_stream(self) -> MuxadoStream:
        self._raise_if_closed()
        try:
            stream_id = self.session.open_stream()
        except SessionClosedError as error:
            raise ConnectionClosedError(str(error)) from None
        stream = self._streams[stream_id] = MuxadoStream(self, stream_id)
        return stream

    async def close(self, code: ErrorCode = ErrorCode.NONE, message: str = "") -> None:
        """GOAWAY, then close the transport; every waiter wakes with an error."""
        if not self.closed:
            self.session.go_away(code, message)
            self._shutdown(f"closed locally: {message}" if message else "closed locally")
        if self._read_task is not asyncio.current_task():
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 5)

    async def wait_closed(self) -> None:
        await self._done.wait()

    # Internals ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "the peer closed the connection"
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    break
                for event in self.session.receive_data(data):
                    self._dispatch(event)
                self._flush()
                if self.session.terminated:
                    reason = self.close_reason
                    break
                transport = self._writer.transport
                if transport.get_write_buffer_size() > READER_WRITE_BACKLOG:
                    await self._writer.drain()
        except (ConnectionError, OSError) as error:
            reason = f"transport error: {error}"
        except asyncio.CancelledError:
            reason = "closed locally"
        finally:
            self._shutdown(reason)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_data(event.data)
        elif isinstance(event, StreamOpened):
            stream = self._streams[event.stream_id] = MuxadoStream(self, event.stream_id)
            self._accepted.put_nowait(stream)
        elif isinstance(event, StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._on_eof()
            self._forget_if_gone(event.stream_id)
        elif isinstance(event, StreamReset):
            stream = self._streams.pop(event.stream_id, None)
            if stream is not None:
                stream._on_reset(event.code)
        elif isinstance(event, WindowUpdated):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream._writable.set()
        elif isinstance(event, GoAwayReceived):
            self.remote_goaway = event
        elif isinstance(event, ConnectionTerminated):
            self.close_reason = f"protocol error ({event.code.name}): {event.message}"

    def _consumed(self, stream_id: int, size: int) -> None:
        if size and not self.closed:
            self.session.acknowledge_received_data(stream_id, size)
            # Credit from many reads in one loop turn leaves in one write.
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.session.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _drain(self) -> None:
        self._flush()
        try:
            await self._writer.drain()
        except (ConnectionError, OSError, RuntimeError) as error:
            self._shutdown(f"transport error: {error}")
            raise ConnectionClosedError(self.close_reason) from None

    def _forget_if_gone(self, stream_id: int) -> None:
        if not self.session.has_stream(stream_id):
            self._streams.pop(stream_id, None)

    def _raise_if_closed(self) -> None:
        if self.closed:
            raise ConnectionClosedError(self.close_reason)

    def _shutdown(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = self.close_reason or reason
        self._flush()  # a GOAWAY we queued leaves before the transport closes
        with contextlib.suppress(Exception):
            self._writer.close()
        for stream in self._streams.values():
            stream._wake()
        self._streams.clear()
        while not self._accepted.empty():  # never hand out streams of a dead connection
            self._accepted.get_nowait()
        self._accepted.put_nowait(None)
        self._done.set()


def _code_name(code: int) -> str:
    return code.name if isinstance(code, ErrorCode) else f"code {code}"
