"""muxado, sans-IO: the stream multiplexing ngrok's agents speak, as a pure state machine.

Feed received bytes to :meth:`Connection.receive_data` and get events back; call the
sending methods and collect :meth:`Connection.data_to_send`. No sockets, no tasks, no
clocks: the asyncio layer (``muxado_streams``) stays thin, and everything here is tested
by feeding bytes.

Framing (all big-endian): a u32 of ``length << 8 | type << 4 | flags``, a u32 stream id
(top bit reserved), then the payload. Types: RST 0 (u32 error code), DATA 1, WNDINC 2
(u32 increment), GOAWAY 3 (stream 0: u32 last stream id, u32 error code, message).
Flags: FIN 0x1, SYN 0x2. A stream opens with a DATA frame flagged SYN; the client opens
odd ids, the server even ones. Each stream has a fixed 256 KiB window per direction.
Any violation by the peer ends the whole connection with a GOAWAY naming the error
(reported as a :class:`ProtocolViolation` event); misuse by our own caller raises
:class:`LocalProtocolError` and sends nothing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

WINDOW = 256 * 1024
MAX_PAYLOAD = 0xFFFFFF
HEADER = struct.Struct(">II")
FIN = 0x1
SYN = 0x2


class FrameType(IntEnum):
    RST = 0
    DATA = 1
    WNDINC = 2
    GOAWAY = 3


class ErrorCode(IntEnum):
    NONE = 0
    PROTOCOL = 1
    INTERNAL = 2
    FLOW_CONTROL = 3
    STREAM_CLOSED = 4
    REFUSED = 5
    CANCELLED = 6
    RESET = 7
    FRAME_SIZE = 8
    ACCEPT_QUEUE_FULL = 9
    ENHANCE_YOUR_CALM = 10
    REMOTE_GONE_AWAY = 11
    STREAMS_EXHAUSTED = 12
    WRITE_TIMEOUT = 13
    SESSION_CLOSED = 14
    PEER_EOF = 15


def encode_frame(kind: FrameType, stream_id: int, payload: bytes = b"", flags: int = 0) -> bytes:
    size = len(payload)
    if size > MAX_PAYLOAD:
        raise ValueError("payload too long for one frame")
    return HEADER.pack((size << 8) | (int(kind) << 4) | flags, stream_id & 0x7FFFFFFF) + payload


# Events: what the peer did, as h2 names it ---------------------------------------------


@dataclass(frozen=True)
class StreamOpened:
    """The peer opened a stream (DATA flagged SYN)."""

    stream_id: int


@dataclass(frozen=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): it will send no more."""

    stream_id: int


@dataclass(frozen=True)
class StreamReset:
    """The peer reset the stream (RST): it is gone both ways."""

    stream_id: int
    code: int


@dataclass(frozen=True)
class WindowUpdated:
    """The peer returned send credit (WNDINC)."""

    stream_id: int
    increment: int


@dataclass(frozen=True)
class ConnectionTerminated:
    """The peer ended the connection (GOAWAY): it opens no more streams."""

    last_stream_id: int
    code: int
    message: bytes


@dataclass(frozen=True)
class ProtocolViolation:
    """The peer broke the protocol (a :class:`RemoteProtocolError`): we queued a GOAWAY
    naming the error, and the connection is over."""

    code: ErrorCode
    message: str


@dataclass
class _PendingData:
    """DATA payloads being gathered into one :class:`DataReceived` (internal)."""

    stream_id: int
    parts: list[memoryview]


Event = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | ConnectionTerminated
    | ProtocolViolation
)


# Errors: whose fault, as h11 splits it -----------------------------------------------


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """Our own caller misused the connection (sent on a closed stream, opened one after
    GOAWAY); raised to that caller, nothing is sent."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. Never raised out of :meth:`Connection.receive_data`:
    it ends the connection with a GOAWAY and comes out as a :class:`ProtocolViolation`."""


# Policies: pure decisions, tested without sockets ------------------------------------


class ReceiveCredit:
    """One stream's receive window, and when what the application consumed goes back to
    the peer as credit (WNDINC): in batches of at least ``batch`` bytes, or at once when
    the peer has used the whole window, to keep WNDINC frames few."""

    __slots__ = ("_unacknowledged", "batch", "window")

    def __init__(self, window: int = WINDOW, batch: int = WINDOW // 16) -> None:
        self.window = window  # how much more the peer may send
        self.batch = batch
        self._unacknowledged = 0  # consumed, credit not yet returned

    def take(self, size: int) -> bool:
        """The peer sent ``size`` bytes: False if the window did not allow them."""
        if size > self.window:
            return False
        self.window -= size
        return True

    def consume(self, size: int) -> int:
        """The application consumed ``size`` bytes: the credit to return now (0: not yet)."""
        self._unacknowledged += size
        if self._unacknowledged < self.batch and self.window:
            return 0
        credit, self._unacknowledged = self._unacknowledged, 0
        self.window += credit
        return credit


class DrainCredit:
    """Credit on drain: bytes forwarded to a writer count as consumed at once if the writer
    took them all, else only once its buffer drains (so a slow reader slows the peer, not
    our memory)."""

    __slots__ = ("draining", "owed")

    def __init__(self) -> None:
        self.owed = 0  # written while the writer was buffering
        self.draining = False

    def written(self, size: int, writer_buffering: bool) -> tuple[int, bool]:
        """``size`` bytes went to the writer: (bytes consumed now, whether to start a drain)."""
        if not self.draining and not writer_buffering:
            return size, False
        self.owed += size
        if self.draining:
            return 0, False
        self.draining = True
        return 0, True

    def drained(self) -> int:
        """The writer drained: the bytes now consumed."""
        owed, self.owed, self.draining = self.owed, 0, False
        return owed

    def failed(self) -> None:
        """The writer failed: nothing more is owed to it."""
        self.draining = False


@dataclass
class _Stream:
    credit: ReceiveCredit = field(default_factory=ReceiveCredit)
    send_window: int = WINDOW  # how much more we may send
    local_ended: bool = False
    remote_ended: bool = False
    pending_syn: bool = False  # opened locally; the SYN goes out with its first DATA frame


class Connection:
    """One side of a muxado connection (``client_side`` opens odd stream ids)."""

    def __init__(
        self,
        client_side: bool,
        *,
        max_payload: int = 1024 * 1024,  # the largest frame we accept (real agents send <= 256 KiB)
        max_streams: int = 1024,  # concurrent streams the peer may open
        send_chunk: int = 64 * 1024,  # the largest DATA frame we send
    ) -> None:
        self.client_side = client_side
        self.max_payload = max_payload
        self.max_streams = max_streams
        self.send_chunk = send_chunk
        self.expect_stream_first = False  # the peer's first frame must open a stream (DATA, SYN)
        self.remote_going_away = False  # the peer sent GOAWAY
        self.closed = False  # we sent GOAWAY (asked to, or because the peer broke the protocol)
        self._streams: dict[int, _Stream] = {}
        self._next_local_id = 1 if client_side else 2
        self._last_remote_id = 0  # none yet
        self._in = bytearray()  # a partial frame, held until complete
        self._held = b""
        self._out: list[bytes] = []
        self._first_header = bytearray()

    @property
    def open_stream_count(self) -> int:
        """Streams not yet ended both ways nor reset, whoever opened them."""
        return len(self._streams)

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    # Receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Process received bytes; the events they carry, in order."""
        if self.closed:
            return []
        events: list[Event | _PendingData] = []
        try:
            if self.expect_stream_first:
                self._check_first_frame(data)
            position = 0
            if self._in:
                # Complete the one partial frame held back, borrowing from ``data``; the rest
                # of ``data`` is then parsed in place rather than appended to a buffer.
                position = self._complete_held_frame(data)
                if self._in:
                    return []
                self._parse(self._held, 0, events)
                self._held = b""
            position = self._parse(data, position, events)
            if position < len(data):
                self._in += memoryview(data)[position:]
                self._check_held_header()
        except RemoteProtocolError as error:
            self.go_away(error.code, str(error))
            self._in.clear()
            events.append(ProtocolViolation(error.code, str(error)))
        for index, event in enumerate(events):  # (in place: usually one or two events)
            if type(event) is _PendingData:
                events[index] = DataReceived(event.stream_id, b"".join(event.parts))
        return events  # type: ignore[return-value]  # every _PendingData was replaced

    def _check_first_frame(self, data: bytes) -> None:
        self._first_header += data[: HEADER.size - len(self._first_header)]
        if len(self._first_header) < HEADER.size:
            return
        self.expect_stream_first = False
        word, stream_id = HEADER.unpack(self._first_header)
        remote_parity = 0 if self.client_side else 1
        if (word >> 4) & 0xF != FrameType.DATA or not word & SYN or stream_id % 2 != remote_parity:
            raise RemoteProtocolError(ErrorCode.PROTOCOL, "the first frame does not open a stream")

    def _check_held_header(self) -> None:
        """Refuse an oversized frame as soon as its header is in, not once it is complete."""
        if len(self._in) >= HEADER.size:
            length = self._held_length()
            if length > self.max_payload:
                raise RemoteProtocolError(ErrorCode.FRAME_SIZE, f"frame of {length} bytes")

    def _held_length(self) -> int:
        """The payload length in the held frame's header (its top 24 bits)."""
        return self._in[0] << 16 | self._in[1] << 8 | self._in[2]

    def _complete_held_frame(self, data: bytes) -> int:
        """Move bytes from ``data`` into the held partial frame; how many were taken.

        When the frame is complete it moves to ``_held`` and ``_in`` is left empty.
        """
        taken = 0
        if len(self._in) < HEADER.size:
            taken = min(HEADER.size - len(self._in), len(data))
            self._in += data[:taken]
            if len(self._in) < HEADER.size:
                return taken
            self._check_held_header()
        size = HEADER.size + self._held_length()
        more = min(size - len(self._in), len(data) - taken)
        self._in += memoryview(data)[taken : taken + more]
        taken += more
        if len(self._in) == size:
            self._held = bytes(self._in)
            self._in.clear()
        return taken

    def _parse(self, buffer: bytes, position: int, events: list[Event | _PendingData]) -> int:
        """Handle every complete frame in ``buffer`` from ``position``; where the rest starts."""
        view = memoryview(buffer)
        size = len(buffer)
        while size - position >= HEADER.size:
            word, stream_id = HEADER.unpack_from(buffer, position)
            length, kind, flags = word >> 8, (word >> 4) & 0xF, word & 0xF
            stream_id &= 0x7FFFFFFF
            if length > self.max_payload:
                raise RemoteProtocolError(ErrorCode.FRAME_SIZE, f"frame of {length} bytes")
            end = position + HEADER.size + length
            if size < end:
                break
            start, position = position + HEADER.size, end
            if kind == FrameType.DATA and not flags and length:
                # The hot path: plain DATA. Runs of it for one stream become one event,
                # as agents send 8 KiB frames and each event costs far more than a byte;
                # the payloads are views, copied once when the run is joined.
                stream = self._streams.get(stream_id)
                credit = stream.credit if stream is not None and not stream.remote_ended else None
                if credit is not None and length <= credit.window:  # ReceiveCredit.take, inlined
                    credit.window -= length
                    last = events[-1] if events else None
                    if type(last) is _PendingData and last.stream_id == stream_id:
                        last.parts.append(view[start:end])
                    else:
                        events.append(_PendingData(stream_id, [view[start:end]]))
                    continue
            self._frame(kind, flags, stream_id, bytes(view[start:end]), events)
        return position

    def _frame(
        self, kind: int, flags: int, stream_id: int, payload: bytes, events: list[Event | _PendingData]
    ) -> None:
        if kind == FrameType.DATA:
            self._data(flags, stream_id, payload, events)
        elif kind == FrameType.WNDINC:
            if len(payload) != 4 or stream_id == 0:
                raise RemoteProtocolError(ErrorCode.PROTOCOL, "malformed WNDINC")
            increment = int.from_bytes(payload, "big")
            stream = self._streams.get(stream_id)
            if stream is not None and increment:
                stream.send_window += increment
                if stream.send_window > 0x7FFFFFFF:
                    raise RemoteProtocolError(
                        ErrorCode.FLOW_CONTROL, f"window overflow on stream {stream_id}"
                    )
                events.append(WindowUpdated(stream_id, increment))
        elif kind == FrameType.RST:
            if len(payload) != 4 or stream_id == 0:
                raise RemoteProtocolError(ErrorCode.PROTOCOL, "malformed RST")
            if self._streams.pop(stream_id, None) is not None:
                events.append(StreamReset(stream_id, int.from_bytes(payload, "big")))
        elif kind == FrameType.GOAWAY:
            if len(payload) < 8 or stream_id != 0:
                raise RemoteProtocolError(ErrorCode.PROTOCOL, "malformed GOAWAY")
            last, code = struct.unpack_from(">II", payload)
            self.remote_going_away = True
            events.append(ConnectionTerminated(last & 0x7FFFFFFF, code, payload[8:]))
        else:
            raise RemoteProtocolError(ErrorCode.PROTOCOL, f"unknown frame type {kind}")

    def _data(self, flags: int, stream_id: int, payload: bytes, events: list[Event | _PendingData]) -> None:
        if stream_id == 0:
            raise RemoteProtocolError(ErrorCode.PROTOCOL, "DATA on stream 0")
        stream = self._streams.get(stream_id)
        if flags & SYN:
            remote_parity = 0 if self.client_side else 1
            # Peers choose an id when they open a stream but send its SYN on the first write,
            # so concurrent streams' SYNs may arrive out of order: only parity and reuse count.
            if stream_id % 2 != remote_parity or stream is not None:
                raise RemoteProtocolError(ErrorCode.PROTOCOL, f"stream {stream_id} may not be opened")
            if self.remote_going_away:
                raise RemoteProtocolError(ErrorCode.PROTOCOL, "new stream after GOAWAY")
            if len(self._streams) >= self.max_streams:
                raise RemoteProtocolError(
                    ErrorCode.ENHANCE_YOUR_CALM, f"more than {self.max_streams} streams"
                )
            self._last_remote_id = max(self._last_remote_id, stream_id)
            stream = self._streams[stream_id] = _Stream()
            events.append(StreamOpened(stream_id))
        elif stream is None:
            return  # a stream we already closed: late frames are expected
        if stream.remote_ended:
            if payload or not flags & FIN:
                raise RemoteProtocolError(ErrorCode.STREAM_CLOSED, f"DATA after FIN on stream {stream_id}")
            return
        if not stream.credit.take(len(payload)):
            raise RemoteProtocolError(ErrorCode.FLOW_CONTROL, f"window overrun on stream {stream_id}")
        if payload:
            events.append(DataReceived(stream_id, payload))
        if flags & FIN:
            stream.remote_ended = True
            events.append(StreamEnded(stream_id))
            self._forget_if_done(stream_id, stream)

    # Sending --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def open_stream(self) -> int:
        if self.closed or self.remote_going_away:
            raise LocalProtocolError(ErrorCode.SESSION_CLOSED, "the connection is closing")
        stream_id = self._next_local_id
        self._next_local_id += 2
        self._streams[stream_id] = _Stream(pending_syn=True)
        return stream_id

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return 0 if stream is None or stream.local_ended else stream.send_window

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """Queue as much of ``data`` as the window allows; how many bytes were taken.

        ``end_stream`` applies only if all of ``data`` was taken.
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_ended or self.closed:
            raise LocalProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} is closed")
        size = len(data)
        taken = size if size <= stream.send_window else stream.send_window
        if taken == size and 0 < size <= self.send_chunk and type(data) is bytes:
            self._data_frame(stream_id, stream, data, 0)  # the usual small write: one frame, no copy
        else:
            view = memoryview(data)[:taken]
            for start in range(0, taken, self.send_chunk):
                self._data_frame(stream_id, stream, bytes(view[start : start + self.send_chunk]), 0)
        stream.send_window -= taken
        if end_stream and taken == size:
            self.end_stream(stream_id)
        elif stream.pending_syn and taken == 0 and not data:
            self._data_frame(stream_id, stream, b"", 0)
        return taken

    def _data_frame(self, stream_id: int, stream: _Stream, payload: bytes, flags: int) -> None:
        if stream.pending_syn:
            flags |= SYN
            stream.pending_syn = False
        self._out.append(encode_frame(FrameType.DATA, stream_id, payload, flags))

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send no more on this stream."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_ended or self.closed:
            return
        self._data_frame(stream_id, stream, b"", FIN)
        stream.local_ended = True
        self._forget_if_done(stream_id, stream)

    def reset_stream(self, stream_id: int, code: ErrorCode = ErrorCode.CANCELLED) -> None:
        if self._streams.pop(stream_id, None) is not None and not self.closed:
            self._out.append(encode_frame(FrameType.RST, stream_id, int(code).to_bytes(4, "big")))

    def acknowledge_received_data(self, stream_id: int, consumed: int) -> bool:
        """The application consumed ``consumed`` bytes: return window credit as
        :class:`ReceiveCredit` decides. Whether a frame was queued (to send)."""
        stream = self._streams.get(stream_id)
        if stream is None or consumed <= 0 or self.closed or stream.remote_ended:
            return False
        credit = stream.credit.consume(consumed)
        if credit:
            self._out.append(encode_frame(FrameType.WNDINC, stream_id, credit.to_bytes(4, "big")))
        return bool(credit)

    def go_away(self, code: ErrorCode = ErrorCode.NONE, message: str = "") -> None:
        if self.closed:
            return
        payload = struct.pack(">II", self._last_remote_id, int(code)) + message.encode()[:1024]
        self._out.append(encode_frame(FrameType.GOAWAY, 0, payload))
        self.closed = True

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.remote_ended:
            del self._streams[stream_id]
