"""muxado frames: exact wire bytes of every frame type, and every way a parser rejects input."""

from __future__ import annotations

import struct

import pytest

from burrow.edge.muxado.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_FIN,
    FLAG_SYN,
    MAX_PAYLOAD,
    DataFrame,
    ErrorCode,
    Frame,
    FrameParser,
    FrameType,
    GoAwayFrame,
    ProtocolError,
    RstFrame,
    WndIncFrame,
    encode_header,
)


def raw_header(length: int, frame_type: int, flags: int, stream_id: int) -> bytes:
    """A header built by hand, so the tests do not trust the encoder they test."""
    return struct.pack(">II", (length << 8) | (frame_type << 4) | flags, stream_id)


def parse_all(data: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> list[Frame]:
    parser = FrameParser(max_frame_size)
    parser.feed(data)
    frames = list(parser)
    assert parser.buffered == 0
    return frames


def rejection(data: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> ProtocolError:
    parser = FrameParser(max_frame_size)
    parser.feed(data)
    with pytest.raises(ProtocolError) as caught:
        list(parser)
    return caught.value


# Wire layout --------------------------------------------------------------------------


def test_flag_and_type_values_are_the_ones_agents_use() -> None:
    assert (FLAG_FIN, FLAG_SYN) == (0x1, 0x2)  # not PROTOCOL.md's 0x10 for SYN
    assert [t.value for t in FrameType] == [0, 1, 2, 3]
    assert [c.value for c in ErrorCode] == list(range(16))
    assert ErrorCode.FLOW_CONTROL.value == 3 and ErrorCode.ENHANCE_YOUR_CALM.value == 0xA
    assert ErrorCode.PEER_EOF.value == 0xF and ErrorCode.SESSION_CLOSED.value == 0xE


def test_data_frame_bytes() -> None:
    assert DataFrame(3, b"abc").encode() == bytes.fromhex("00000310 00000003") + b"abc"
    assert DataFrame(3, b"abc", syn=True).encode()[:8] == bytes.fromhex("00000312 00000003")
    assert DataFrame(2, b"", fin=True).encode() == bytes.fromhex("00000011 00000002")
    assert DataFrame(5, b"x", syn=True, fin=True).encode()[:8] == raw_header(1, 1, 0x3, 5)


def test_rst_wndinc_goaway_bytes() -> None:
    assert RstFrame(7, ErrorCode.FLOW_CONTROL).encode() == bytes.fromhex("00000400 00000007 00000003")
    assert WndIncFrame(7, 0x40000).encode() == bytes.fromhex("00000420 00000007 00040000")
    assert GoAwayFrame(9, ErrorCode.PROTOCOL, b"bye").encode() == (
        bytes.fromhex("00000b30 00000000 00000009 00000001") + b"bye"
    )


def test_every_frame_type_round_trips() -> None:
    frames: list[Frame] = [
        DataFrame(3, b"hello", syn=True),
        DataFrame(3, b"", fin=True),
        DataFrame(0x7FFFFFFF, b"\x00" * 1000),
        RstFrame(2, ErrorCode.CANCELLED),
        RstFrame(2, 0xDEADBEEF),  # codes we do not know survive as plain ints
        WndIncFrame(4, 1),
        WndIncFrame(4, 0x7FFFFFFF),
        GoAwayFrame(0, ErrorCode.NONE),
        GoAwayFrame(0x7FFFFFFF, ErrorCode.PEER_EOF, "fin \N{SNOWMAN}".encode()),
    ]
    wire = b"".join(frame.encode() for frame in frames)
    assert parse_all(wire) == frames
    parsed = parse_all(RstFrame(2, ErrorCode.CANCELLED).encode())[0]
    assert isinstance(parsed, RstFrame) and parsed.code is ErrorCode.CANCELLED


def test_reserved_bits_are_masked_on_read() -> None:
    data = raw_header(0, 1, FLAG_FIN, 0x80000005)
    wndinc = raw_header(4, 2, 0, 0x80000003) + struct.pack(">I", 0x80000010)
    goaway = raw_header(8, 3, 0, 0) + struct.pack(">II", 0x80000004, 0)
    assert parse_all(data + wndinc + goaway) == [
        DataFrame(5, b"", fin=True),
        WndIncFrame(3, 0x10),
        GoAwayFrame(4, ErrorCode.NONE),
    ]


def test_unknown_flag_bits_and_flags_on_control_frames_are_ignored() -> None:
    assert parse_all(raw_header(1, 1, 0xC, 3) + b"x") == [DataFrame(3, b"x")]
    assert parse_all(raw_header(4, 0, 0xF, 3) + bytes(4)) == [RstFrame(3, ErrorCode.NONE)]


def test_encoders_refuse_what_the_wire_cannot_carry() -> None:
    with pytest.raises(ValueError):
        DataFrame(1, b"x" * (MAX_PAYLOAD + 1)).encode()
    with pytest.raises(ValueError):
        DataFrame(0, b"x").encode()
    with pytest.raises(ValueError):
        DataFrame(0x80000000, b"x").encode()
    with pytest.raises(ValueError):
        RstFrame(0, ErrorCode.NONE).encode()
    with pytest.raises(ValueError):
        RstFrame(1, 1 << 32).encode()
    with pytest.raises(ValueError):
        WndIncFrame(0, 1).encode()
    with pytest.raises(ValueError):
        WndIncFrame(1, 0x80000000).encode()
    with pytest.raises(ValueError):
        GoAwayFrame(-1, ErrorCode.NONE).encode()
    with pytest.raises(ValueError):
        GoAwayFrame(0, ErrorCode.NONE, b"x" * (MAX_PAYLOAD - 7)).encode()
    with pytest.raises(ValueError):
        encode_header(FrameType.DATA, 0x10, 1, 0)
    assert len(DataFrame(1, b"x" * MAX_PAYLOAD).encode()) == MAX_PAYLOAD + 8


# Streaming ----------------------------------------------------------------------------


def test_any_chunking_yields_the_same_frames() -> None:
    frames: list[Frame] = [
        DataFrame(3, b"a" * 300, syn=True),
        WndIncFrame(3, 300),
        DataFrame(3, b"", fin=True),
        RstFrame(5, ErrorCode.RESET),
        GoAwayFrame(3, ErrorCode.NONE, b"done"),
    ]
    wire = b"".join(frame.encode() for frame in frames)
    for size in (1, 2, 3, 7, 8, 9, 64, 333, len(wire)):
        parser = FrameParser()
        parsed: list[Frame] = []
        for start in range(0, len(wire), size):
            parser.feed(wire[start : start + size])
            parsed.extend(parser)
        assert parsed == frames, size
        assert parser.buffered == 0


def test_partial_frames_wait_for_more_bytes() -> None:
    parser = FrameParser()
    wire = DataFrame(3, b"0123456789").encode()
    parser.feed(wire[:5])
    assert parser.next_frame() is None and parser.buffered == 5
    parser.feed(wire[5:12])
    assert parser.next_frame() is None and parser.buffered == 12
    parser.feed(wire[12:])
    assert parser.next_frame() == DataFrame(3, b"0123456789")
    assert parser.next_frame() is None and parser.buffered == 0


def test_fed_buffers_may_be_reused_by_the_caller() -> None:
    parser = FrameParser()
    buffer = bytearray(DataFrame(3, b"abc").encode() + DataFrame(3, b"de").encode()[:9])
    parser.feed(buffer)  # parsed in place only if immutable; this one is copied
    buffer[:] = bytes(len(buffer))
    parser.feed(b"e")
    assert list(parser) == [DataFrame(3, b"abc"), DataFrame(3, b"de")]
    parser.feed(b"")
    assert parser.buffered == 0 and parser.next_frame() is None


def test_max_frame_size_must_be_sane() -> None:
    with pytest.raises(ValueError):
        FrameParser(7)
    with pytest.raises(ValueError):
        FrameParser(MAX_PAYLOAD + 1)
    assert FrameParser(MAX_PAYLOAD).max_frame_size == MAX_PAYLOAD


# Rejections ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame_type", range(4, 16))
def test_unknown_frame_types_are_protocol_errors(frame_type: int) -> None:
    error = rejection(raw_header(0, frame_type, 0, 1))
    assert error.code is ErrorCode.PROTOCOL and "unknown frame type" in error.message


def test_oversized_frames_are_refused_from_their_header_alone() -> None:
    error = rejection(raw_header(1025, 1, 0, 3), max_frame_size=1024)
    assert error.code is ErrorCode.FRAME_SIZE
    assert parse_all(raw_header(1024, 1, 0, 3) + bytes(1024), max_frame_size=1024) == [
        DataFrame(3, bytes(1024))
    ]
    # The default refuses a 16 MiB claim without waiting for 16 MiB to arrive.
    assert rejection(raw_header(MAX_PAYLOAD, 1, 0, 3)).code is ErrorCode.FRAME_SIZE


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (raw_header(4, 0, 0, 0), ErrorCode.PROTOCOL),  # RST on stream 0
        (raw_header(3, 0, 0, 1), ErrorCode.FRAME_SIZE),  # RST too short
        (raw_header(5, 0, 0, 1), ErrorCode.FRAME_SIZE),  # RST too long
        (raw_header(4, 2, 0, 0), ErrorCode.PROTOCOL),  # WNDINC on stream 0
        (raw_header(0, 2, 0, 1), ErrorCode.FRAME_SIZE),  # WNDINC empty
        (raw_header(8, 2, 0, 1), ErrorCode.FRAME_SIZE),  # WNDINC too long
        (raw_header(8, 3, 0, 1), ErrorCode.PROTOCOL),  # GOAWAY on a stream
        (raw_header(7, 3, 0, 0), ErrorCode.FRAME_SIZE),  # GOAWAY without its fixed fields
        (raw_header(1, 1, 0, 0), ErrorCode.PROTOCOL),  # DATA on stream 0
    ],
)
def test_malformed_headers(header: bytes, code: ErrorCode) -> None:
    assert rejection(header).code is code


def test_frames_before_garbage_are_delivered_and_the_parser_stays_failed() -> None:
    parser = FrameParser()
    parser.feed(DataFrame(3, b"ok").encode() + b"\xff" * 8 + DataFrame(3, b"never").encode())
    assert parser.next_frame() == DataFrame(3, b"ok")
    with pytest.raises(ProtocolError):
        parser.next_frame()
    parser.feed(DataFrame(3, b"after").encode())  # ignored: nothing after garbage is trusted
    with pytest.raises(ProtocolError):
        parser.next_frame()
    assert parser.buffered == 0


def test_ngrok_rust_goaway_length_bug_is_caught_not_crashed_on() -> None:
    """ngrok-rust's ``Frame::goaway`` sets the length to the message alone, forgetting the
    8 fixed bytes; it sends one (\"invalid frame\") only after receiving a bad frame type.
    We read the GOAWAY (with a truncated message), then see garbage and stop."""
    message = b"invalid frame"
    buggy = raw_header(len(message), 3, 0, 0) + struct.pack(">II", 0, 1) + message
    parser = FrameParser()
    parser.feed(buggy)
    assert parser.next_frame() == GoAwayFrame(0, ErrorCode.PROTOCOL, message[:5])
    with pytest.raises(ProtocolError) as caught:
        parser.next_frame()
    # b"id f" read as a header: type 6, unknown.
    assert caught.value.code is ErrorCode.PROTOCOL and "type 6" in caught.value.message
