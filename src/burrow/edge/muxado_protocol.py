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
Any violation by the peer ends the whole connection with a GOAWAY naming the error.
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
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long for one frame")
    return HEADER.pack((len(payload) << 8) | (int(kind) << 4) | flags, stream_id & 0x7FFFFFFF) + payload


# Events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamOpened:
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
    stream_id: int
    code: int


@dataclass(frozen=True)
class WindowUpdated:
    stream_id: int
    increment: int


@dataclass(frozen=True)
class GoAwayReceived:
    last_stream_id: int
    code: int
    message: bytes


@dataclass(frozen=True)
class ConnectionTerminated:
    """We found the peer at fault; a GOAWAY is queued and the connection is over."""

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
    | GoAwayReceived
    | ConnectionTerminated
)


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Stream:
    receive_window: int = WINDOW  # how much more the peer may send
    send_window: int = WINDOW  # how much more we may send
    unacknowledged: int = 0  # consumed by the application, credit not yet returned
    local_ended: bool = False
    remote_ended: bool = False
    pending_syn: bool = False  # opened locally; the SYN goes out with its first DATA frame


@dataclass
class Connection:
    client_side: bool
    max_payload: int = 1024 * 1024  # the largest frame we accept (real agents send <= 256 KiB)
    max_streams: int = 1024  # concurrent streams the peer may open
    send_chunk: int = 64 * 1024  # the largest DATA frame we send
    streams: dict[int, _Stream] = field(default_factory=dict)
    closed: bool = False
    _next_local_id: int = 0
    _last_remote_id: int = 0
    _in: bytearray = field(default_factory=bytearray)  # a partial frame, held until complete
    _held: bytes = b""
    _out: list[bytes] = field(default_factory=list)
    remote_going_away: bool = False
    expect_stream_first: bool = False  # the peer's first frame must open a stream (DATA, SYN)
    _first_header: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self._next_local_id = 1 if self.client_side else 2
        if self.client_side:
            # A server's first stream is 2; 0 means "none yet".
            self._last_remote_id = 0

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
        except ProtocolError as error:
            self.go_away(error.code, str(error))
            self._in.clear()
            events.append(ConnectionTerminated(error.code, str(error)))
        return [
            DataReceived(e.stream_id, b"".join(e.parts)) if isinstance(e, _PendingData) else e for e in events
        ]

    def _check_first_frame(self, data: bytes) -> None:
        self._first_header += data[: HEADER.size - len(self._first_header)]
        if len(self._first_header) < HEADER.size:
            return
        self.expect_stream_first = False
        word, stream_id = HEADER.unpack(self._first_header)
        remote_parity = 0 if self.client_side else 1
        if (word >> 4) & 0xF != FrameType.DATA or not word & SYN or stream_id % 2 != remote_parity:
            raise ProtocolError(ErrorCode.PROTOCOL, "the first frame does not open a stream")

    def _check_held_header(self) -> None:
        """Refuse an oversized frame as soon as its header is in, not once it is complete."""
        if len(self._in) >= HEADER.size:
            length = self._held_length()
            if length > self.max_payload:
                raise ProtocolError(ErrorCode.FRAME_SIZE, f"frame of {length} bytes")

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
                raise ProtocolError(ErrorCode.FRAME_SIZE, f"frame of {length} bytes")
            end = position + HEADER.size + length
            if size < end:
                break
            start, position = position + HEADER.size, end
            if kind == FrameType.DATA and not flags and length:
                # The hot path: plain DATA. Runs of it for one stream become one event,
                # as agents send 8 KiB frames and each event costs far more than a byte;
                # the payloads are views, copied once when the run is joined.
                stream = self.streams.get(stream_id)
                if stream is not None and not stream.remote_ended and length <= stream.receive_window:
                    stream.receive_window -= length
                    last = events[-1] if events else None
                    if isinstance(last, _PendingData) and last.stream_id == stream_id:
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
                raise ProtocolError(ErrorCode.PROTOCOL, "malformed WNDINC")
            increment = int.from_bytes(payload, "big")
            stream = self.streams.get(stream_id)
            if stream is not None and increment:
                stream.send_window += increment
                if stream.send_window > 0x7FFFFFFF:
                    raise ProtocolError(ErrorCode.FLOW_CONTROL, f"window overflow on stream {stream_id}")
                events.append(WindowUpdated(stream_id, increment))
        elif kind == FrameType.RST:
            if len(payload) != 4 or stream_id == 0:
                raise ProtocolError(ErrorCode.PROTOCOL, "malformed RST")
            if self.streams.pop(stream_id, None) is not None:
                events.append(StreamReset(stream_id, int.from_bytes(payload, "big")))
        elif kind == FrameType.GOAWAY:
            if len(payload) < 8 or stream_id != 0:
                raise ProtocolError(ErrorCode.PROTOCOL, "malformed GOAWAY")
            last, code = struct.unpack_from(">II", payload)
            self.remote_going_away = True
            events.append(GoAwayReceived(last & 0x7FFFFFFF, code, payload[8:]))
        else:
            raise ProtocolError(ErrorCode.PROTOCOL, f"unknown frame type {kind}")

    def _data(self, flags: int, stream_id: int, payload: bytes, events: list[Event | _PendingData]) -> None:
        if stream_id == 0:
            raise ProtocolError(ErrorCode.PROTOCOL, "DATA on stream 0")
        stream = self.streams.get(stream_id)
        if flags & SYN:
            remote_parity = 0 if self.client_side else 1
            # Peers choose an id when they open a stream but send its SYN on the first write,
            # so concurrent streams' SYNs may arrive out of order: only parity and reuse count.
            if stream_id % 2 != remote_parity or stream is not None:
                raise ProtocolError(ErrorCode.PROTOCOL, f"stream {stream_id} may not be opened")
            if self.remote_going_away:
                raise ProtocolError(ErrorCode.PROTOCOL, "new stream after GOAWAY")
            if len(self.streams) >= self.max_streams:
                raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, f"more than {self.max_streams} streams")
            self._last_remote_id = max(self._last_remote_id, stream_id)
            stream = self.streams[stream_id] = _Stream()
            events.append(StreamOpened(stream_id))
        elif stream is None:
            return  # a stream we already closed: late frames are expected
        if stream.remote_ended:
            if payload or not flags & FIN:
                raise ProtocolError(ErrorCode.STREAM_CLOSED, f"DATA after FIN on stream {stream_id}")
            return
        if len(payload) > stream.receive_window:
            raise ProtocolError(ErrorCode.FLOW_CONTROL, f"window overrun on stream {stream_id}")
        stream.receive_window -= len(payload)
        if payload:
            events.append(DataReceived(stream_id, payload))
        if flags & FIN:
            stream.remote_ended = True
            events.append(StreamEnded(stream_id))
            self._forget_if_done(stream_id, stream)

    # Sending --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def open_stream(self) -> int:
        if self.closed or self.remote_going_away:
            raise ProtocolError(ErrorCode.SESSION_CLOSED, "the connection is closing")
        stream_id = self._next_local_id
        self._next_local_id += 2
        self.streams[stream_id] = _Stream(pending_syn=True)
        return stream_id

    def send_window(self, stream_id: int) -> int:
        stream = self.streams.get(stream_id)
        return 0 if stream is None or stream.local_ended else stream.send_window

    def send_data(self, stream_id: int, data: bytes | memoryview, end_stream: bool = False) -> int:
        """Queue as much of ``data`` as the window allows; how many bytes were taken.

        ``end_stream`` applies only if all of ``data`` was taken.
        """
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_ended or self.closed:
            raise ProtocolError(ErrorCode.STREAM_CLOSED, f"stream {stream_id} is closed")
        taken = min(len(data), stream.send_window)
        view = memoryview(data)[:taken]
        for start in range(0, taken, self.send_chunk):
            self._data_frame(stream_id, stream, bytes(view[start : start + self.send_chunk]), 0)
        stream.send_window -= taken
        if end_stream and taken == len(data):
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
        stream = self.streams.get(stream_id)
        if stream is None or stream.local_ended or self.closed:
            return
        self._data_frame(stream_id, stream, b"", FIN)
        stream.local_ended = True
        self._forget_if_done(stream_id, stream)

    def reset_stream(self, stream_id: int, code: ErrorCode = ErrorCode.CANCELLED) -> None:
        if self.streams.pop(stream_id, None) is not None and not self.closed:
            self._out.append(encode_frame(FrameType.RST, stream_id, int(code).to_bytes(4, "big")))

    def acknowledge_received_data(self, stream_id: int, consumed: int) -> None:
        """The application consumed ``consumed`` bytes: return that much window credit.

        Credit goes back in batches of at least a sixteenth of the window, or when the peer
        has used it all, to keep WNDINC frames few.
        """
        stream = self.streams.get(stream_id)
        if stream is None or consumed <= 0 or self.closed or stream.remote_ended:
            return
        stream.unacknowledged += consumed
        if stream.unacknowledged >= WINDOW // 16 or stream.receive_window == 0:
            stream.receive_window += stream.unacknowledged
            self._out.append(
                encode_frame(FrameType.WNDINC, stream_id, stream.unacknowledged.to_bytes(4, "big"))
            )
            stream.unacknowledged = 0

    def go_away(self, code: ErrorCode = ErrorCode.NONE, message: str = "") -> None:
        if self.closed:
            return
        payload = struct.pack(">II", self._last_remote_id, int(code)) + message.encode()[:1024]
        self._out.append(encode_frame(FrameType.GOAWAY, 0, payload))
        self.closed = True

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.remote_ended:
            del self.streams[stream_id]
