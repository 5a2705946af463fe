"""muxado frames: the 8-byte header, the four frame types, and a streaming parser.

Wire layout (big-endian): a u32 ``length << 8 | type << 4 | flags``, a u32 stream id whose
top bit is reserved (masked off on read, never set on write), then ``length`` bytes of
payload. Types: RST 0 (u32 error code), DATA 1 (bytes), WNDINC 2 (u32 increment),
GOAWAY 3 (stream 0: u32 last stream id, u32 error code, then a free-form message).
Flags: FIN 0x1 and SYN 0x2 (muxado's PROTOCOL.md says 0x10 for SYN; both real
implementations use 0x2, and so do the agents on the wire).

The parser checks everything a frame header alone can tell (type, length, stream 0 rules)
and raises :class:`ProtocolError` naming the error code to put in the GOAWAY. Rules that
need connection state (windows, stream ids in use) belong to :mod:`.session`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

HEADER: Final = struct.Struct(">II")
HEADER_SIZE: Final = HEADER.size
MAX_PAYLOAD: Final = 0xFFFFFF  # 24 bits of length
MAX_STREAM_ID: Final = 0x7FFFFFFF  # 31 bits; the top bit is reserved
MAX_INCREMENT: Final = 0x7FFFFFFF
FLAG_FIN: Final = 0x1
FLAG_SYN: Final = 0x2

# Neither reference implementation caps frames below 16 MiB, but a legitimate DATA frame
# never exceeds the 256 KiB window and muxado-go reads at most 1 MiB of GOAWAY message,
# so anything larger is an attack on our memory, not traffic.
DEFAULT_MAX_FRAME_SIZE: Final = 1024 * 1024

_U32: Final = struct.Struct(">I")
# Plain ints for the parser's hot path: comparing against enum members costs a lookup each.
_RST, _DATA, _WNDINC, _GOAWAY = 0, 1, 2, 3
_GOAWAY_FIXED: Final = struct.Struct(">II")


class FrameType(IntEnum):
    RST = 0
    DATA = 1
    WNDINC = 2
    GOAWAY = 3


class ErrorCode(IntEnum):
    NONE = 0x0
    PROTOCOL = 0x1
    INTERNAL = 0x2
    FLOW_CONTROL = 0x3
    STREAM_CLOSED = 0x4
    REFUSED = 0x5
    CANCELLED = 0x6
    RESET = 0x7
    FRAME_SIZE = 0x8
    ACCEPT_QUEUE_FULL = 0x9
    ENHANCE_YOUR_CALM = 0xA
    REMOTE_GONE_AWAY = 0xB
    STREAMS_EXHAUSTED = 0xC
    WRITE_TIMEOUT = 0xD
    SESSION_CLOSED = 0xE
    PEER_EOF = 0xF


def error_code(value: int) -> int:
    """``value`` as an :class:`ErrorCode` when it is one; peers may send codes we don't know."""
    try:
        return ErrorCode(value)
    except ValueError:
        return value


class MuxadoError(Exception):
    """Base of every muxado error."""


class ProtocolError(MuxadoError):
    """The peer broke the protocol; ``code`` is what the GOAWAY should say."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# Frames ------------------------------------------------------------------------------


def encode_header(frame_type: FrameType, flags: int, stream_id: int, length: int) -> bytes:
    if not 0 <= length <= MAX_PAYLOAD:
        raise ValueError(f"frame payload of {length} bytes does not fit in 24 bits")
    if not 0 <= stream_id <= MAX_STREAM_ID:
        raise ValueError(f"stream id {stream_id} out of range")
    if not 0 <= flags <= 0xF:
        raise ValueError(f"flags {flags:#x} do not fit in 4 bits")
    return HEADER.pack((length << 8) | (int(frame_type) << 4) | flags, stream_id)


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} {value} does not fit in 32 bits")
    return _U32.pack(value)


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    syn: bool = False
    fin: bool = False

    @property
    def flags(self) -> int:
        return (FLAG_SYN if self.syn else 0) | (FLAG_FIN if self.fin else 0)

    def encode(self) -> bytes:
        if self.stream_id == 0:
            raise ValueError("DATA may not use stream 0")
        return encode_header(FrameType.DATA, self.flags, self.stream_id, len(self.data)) + self.data


@dataclass(frozen=True, slots=True)
class RstFrame:
    stream_id: int
    code: int

    def encode(self) -> bytes:
        if self.stream_id == 0:
            raise ValueError("RST may not use stream 0")
        return encode_header(FrameType.RST, 0, self.stream_id, 4) + _u32(self.code, "error code")


@dataclass(frozen=True, slots=True)
class WndIncFrame:
    stream_id: int
    increment: int

    def encode(self) -> bytes:
        if self.stream_id == 0:
            raise ValueError("WNDINC may not use stream 0")
        if not 0 <= self.increment <= MAX_INCREMENT:
            raise ValueError(f"window increment {self.increment} out of range")
        return encode_header(FrameType.WNDINC, 0, self.stream_id, 4) + _U32.pack(self.increment)


@dataclass(frozen=True, slots=True)
class GoAwayFrame:
    last_stream_id: int
    code: int
    message: bytes = b""

    def encode(self) -> bytes:
        if not 0 <= self.last_stream_id <= MAX_STREAM_ID:
            raise ValueError(f"last stream id {self.last_stream_id} out of range")
        # The length covers the 8 fixed bytes too (ngrok-rust's encoder forgets them; see
        # the tests for what that does to a reader).
        header = encode_header(FrameType.GOAWAY, 0, 0, 8 + len(self.message))
        return header + _U32.pack(self.last_stream_id) + _u32(self.code, "error code") + self.message


Frame = DataFrame | RstFrame | WndIncFrame | GoAwayFrame


# Parsing -----------------------------------------------------------------------------


class FrameParser:
    """Turns a byte stream, in chunks of any size, into frames.

    :meth:`feed` buffers bytes; :meth:`next_frame` (or iterating) hands out complete frames
    in order and raises :class:`ProtocolError` at the first malformed one, after which the
    parser stays failed: nothing after garbage can be trusted. A frame is rejected as soon
    as its header arrives, so an oversized length never makes us buffer its payload.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if not 8 <= max_frame_size <= MAX_PAYLOAD:
            raise ValueError(f"max_frame_size must be between 8 and {MAX_PAYLOAD}")
        self.max_frame_size = max_frame_size
        self._buffer: bytes | bytearray = b""
        self._offset = 0  # start of the first unparsed byte
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        if self._error is not None or not data:
            return
        if self._offset == len(self._buffer):
            # The common case, everything before was parsed: parse the bytes where they are.
            self._buffer = data if isinstance(data, bytes) else bytes(data)
        elif isinstance(self._buffer, bytearray):
            del self._buffer[: self._offset]  # once per feed, not once per frame
            self._buffer += data
        else:
            self._buffer = bytearray(memoryview(self._buffer)[self._offset :]) + data
        self._offset = 0

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        buffer, start = self._buffer, self._offset
        if len(buffer) - start < HEADER_SIZE:
            return None
        word, stream_id = HEADER.unpack_from(buffer, start)
        length, frame_type, flags = word >> 8, (word >> 4) & 0xF, word & 0xF
        stream_id &= MAX_STREAM_ID
        if frame_type != _DATA or stream_id == 0 or length > self.max_frame_size:
            self._check_header(length, frame_type, stream_id)
        end = start + HEADER_SIZE + length
        if len(buffer) < end:
            return None
        if isinstance(buffer, bytes):
            payload = buffer[start + HEADER_SIZE : end]
        else:
            with memoryview(buffer) as view:  # released at once, or the buffer cannot shrink
                payload = bytes(view[start + HEADER_SIZE : end])
        self._offset = end
        if frame_type == _DATA:
            return DataFrame(stream_id, payload, bool(flags & FLAG_SYN), bool(flags & FLAG_FIN))
        if frame_type == _WNDINC:
            return WndIncFrame(stream_id, _U32.unpack(payload)[0] & MAX_INCREMENT)
        if frame_type == _RST:
            return RstFrame(stream_id, error_code(_U32.unpack(payload)[0]))
        last_stream_id, code = _GOAWAY_FIXED.unpack_from(payload)
        return GoAwayFrame(last_stream_id & MAX_STREAM_ID, error_code(code), payload[8:])

    def _check_header(self, length: int, frame_type: int, stream_id: int) -> None:
        """Raise (and stay failed) if the header is malformed."""
        error = _header_error(length, frame_type, stream_id, self.max_frame_size)
        if error is not None:
            self._fail(error)
            raise error

    def _fail(self, error: ProtocolError) -> None:
        self._error = error
        self._buffer = b""
        self._offset = 0


def _header_error(length: int, frame_type: int, stream_id: int, max_frame_size: int) -> ProtocolError | None:
    if frame_type > _GOAWAY:
        return ProtocolError(ErrorCode.PROTOCOL, f"unknown frame type {frame_type}")
    if length > max_frame_size:
        return ProtocolError(
            ErrorCode.FRAME_SIZE, f"frame of {length} bytes exceeds the limit of {max_frame_size}"
        )
    name = FrameType(frame_type).name
    if frame_type == _GOAWAY:
        if stream_id != 0:
            return ProtocolError(ErrorCode.PROTOCOL, f"GOAWAY on stream {stream_id}")
        if length < 8:
            return ProtocolError(ErrorCode.FRAME_SIZE, f"GOAWAY of {length} bytes")
        return None
    if stream_id == 0:
        return ProtocolError(ErrorCode.PROTOCOL, f"{name} on stream 0")
    if frame_type != _DATA and length != 4:
        return ProtocolError(ErrorCode.FRAME_SIZE, f"{name} of {length} bytes")
    return None
