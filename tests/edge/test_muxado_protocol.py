"""muxado, sans-IO: every frame type and error path, by feeding bytes."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from burrow.edge import muxado_protocol as mux
from burrow.edge.muxado_protocol import ErrorCode, FrameType, encode_frame


def pair() -> tuple[mux.Connection, mux.Connection]:
    return mux.Connection(client_side=True), mux.Connection(client_side=False)


def pump(sender: mux.Connection, receiver: mux.Connection) -> list[mux.Event]:
    return receiver.receive_data(sender.data_to_send())


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every frame in ``data``."""
    out = []
    while data:
        word, stream_id = struct.unpack_from(">II", data)
        length = word >> 8
        out.append(((word >> 4) & 0xF, word & 0xF, stream_id, data[8 : 8 + length]))
        data = data[8 + length :]
    return out


def terminated(events: list[mux.Event]) -> ErrorCode:
    assert isinstance(events[-1], mux.ProtocolViolation), events
    return events[-1].code


def test_header_layout() -> None:
    frame = encode_frame(FrameType.DATA, 3, b"abc", mux.SYN | mux.FIN)
    assert frame == bytes.fromhex("0000031300000003") + b"abc"
    assert frames(encode_frame(FrameType.GOAWAY, 0, b"x" * 9)) == [(3, 0, 0, b"x" * 9)]
    with pytest.raises(ValueError):
        encode_frame(FrameType.DATA, 1, b"x" * (mux.MAX_PAYLOAD + 1))


def test_open_send_half_close_both_ways() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    assert stream_id == 1 and client.open_stream() == 3
    assert client.send_data(stream_id, b"hello") == 5
    wire = client.data_to_send()
    assert frames(wire) == [(1, mux.SYN, 1, b"hello")]  # the SYN rides on the first DATA
    events = server.receive_data(wire)
    assert events == [mux.StreamOpened(1), mux.DataReceived(1, b"hello")]
    client.end_stream(stream_id)
    assert pump(client, server) == [mux.StreamEnded(1)]
    assert server.send_data(1, b"reply", end_stream=True) == 5
    assert pump(server, client) == [mux.DataReceived(1, b"reply"), mux.StreamEnded(1)]
    assert not client.is_open(1) and not server.is_open(1)  # both sides ended: forgotten
    assert server.open_stream() == 2  # the server's ids are even


def test_empty_open_and_fin_only_streams() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.end_stream(stream_id)
    assert frames(client.data_to_send()) == [(1, mux.SYN | mux.FIN, 1, b"")]


def test_flow_control_caps_sending_and_returns_credit_in_batches() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    assert client.send_data(stream_id, b"x" * (mux.WINDOW + 10)) == mux.WINDOW
    assert client.send_window(stream_id) == 0 and client.send_data(stream_id, b"more") == 0
    events = pump(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, mux.DataReceived)) == mux.WINDOW
    # The peer has used its whole window: credit goes back at once, however small.
    assert server.acknowledge_received_data(stream_id, 100) is True  # (a frame is queued)
    assert frames(server.data_to_send()) == [(2, 0, 1, (100).to_bytes(4, "big"))]
    # With window left, small credit waits for a batch of a sixteenth of the window.
    assert server.acknowledge_received_data(stream_id, 1000) is False
    assert server.data_to_send() == b""
    assert server.acknowledge_received_data(stream_id, mux.WINDOW // 16 - 1000) is True
    assert frames(server.data_to_send()) == [(2, 0, 1, (mux.WINDOW // 16).to_bytes(4, "big"))]
    assert server.acknowledge_received_data(stream_id, 0) is False
    client.receive_data(encode_frame(FrameType.WNDINC, stream_id, (5).to_bytes(4, "big")))
    assert client.send_window(stream_id) == 5


@pytest.mark.parametrize("size", [1, 100, 64 * 1024, 64 * 1024 + 1, mux.WINDOW + 10])
@pytest.mark.parametrize("kind", [bytes, memoryview, bytearray])
def test_sent_data_makes_the_same_frames_from_any_buffer(size: int, kind: type) -> None:
    """Small bytes take a one-frame path; every buffer and size frames alike, within the window."""
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    client, server = pair()
    stream_id = client.open_stream()
    assert client.send_data(stream_id, kind(data)) == min(size, mux.WINDOW)
    wire = client.data_to_send()
    sent = frames(wire)
    assert all(len(payload) <= client.send_chunk for _, _, _, payload in sent)
    assert b"".join(payload for _, _, _, payload in sent) == data[: mux.WINDOW]
    assert [flags for _, flags, _, _ in sent] == [mux.SYN] + [0] * (len(sent) - 1)
    assert client.send_window(stream_id) == mux.WINDOW - min(size, mux.WINDOW)
    received = server.receive_data(wire)
    assert b"".join(e.data for e in received if isinstance(e, mux.DataReceived)) == data[: mux.WINDOW]


def test_window_updates_are_events() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"x" * mux.WINDOW)
    pump(client, server)
    server.acknowledge_received_data(stream_id, mux.WINDOW)
    assert pump(server, client) == [mux.WindowUpdated(stream_id, mux.WINDOW)]
    assert client.send_window(stream_id) == mux.WINDOW


def test_reset_both_ways() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"a")
    pump(client, server)
    server.reset_stream(stream_id, ErrorCode.REFUSED)
    assert pump(server, client) == [mux.StreamReset(stream_id, ErrorCode.REFUSED)]
    assert not client.is_open(stream_id)
    with pytest.raises(mux.LocalProtocolError):
        client.send_data(stream_id, b"late")
    # Frames for a stream already gone are ignored, not fatal.
    assert server.receive_data(encode_frame(FrameType.DATA, stream_id, b"late")) == []
    assert server.receive_data(encode_frame(FrameType.WNDINC, stream_id, b"\0\0\0\1")) == []
    assert server.receive_data(encode_frame(FrameType.RST, stream_id, b"\0\0\0\1")) == []
    assert not server.closed


def test_go_away_both_ways() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"a")
    pump(client, server)
    server.go_away(ErrorCode.NONE, "bye")
    assert server.closed
    with pytest.raises(mux.LocalProtocolError):
        server.open_stream()
    events = pump(server, client)
    assert events == [mux.ConnectionTerminated(stream_id, ErrorCode.NONE, b"bye")]
    with pytest.raises(mux.LocalProtocolError):
        client.open_stream()  # the peer is going away: no new streams
    assert server.receive_data(b"anything") == []  # a closed connection ignores input


def test_receiving_in_arbitrary_pieces_gives_the_same_events() -> None:
    client, server = pair()
    for _ in range(3):
        stream_id = client.open_stream()
        client.send_data(stream_id, bytes(range(200)), end_stream=True)
    wire = client.data_to_send()
    whole = mux.Connection(client_side=False).receive_data(wire)
    pieces: list[mux.Event] = []
    for i in range(len(wire)):
        pieces += server.receive_data(wire[i : i + 1])
    assert pieces == whole and len(whole) == 9


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(FrameType.DATA, 0, b"x"), ErrorCode.PROTOCOL),  # DATA on stream 0
        (encode_frame(FrameType.DATA, 2, b"x", mux.SYN), ErrorCode.PROTOCOL),  # client opening an even id
        (encode_frame(FrameType.DATA, 3, b"", mux.SYN) * 2, ErrorCode.PROTOCOL),  # an id opened twice
        (encode_frame(FrameType.DATA, 1, b"x" * (mux.WINDOW + 1), mux.SYN), ErrorCode.FLOW_CONTROL),
        (
            encode_frame(FrameType.DATA, 1, b"", mux.SYN | mux.FIN) + encode_frame(FrameType.DATA, 1, b"x"),
            ErrorCode.STREAM_CLOSED,
        ),  # data after FIN
        (encode_frame(FrameType.WNDINC, 1, b"\0\0\1"), ErrorCode.PROTOCOL),  # short WNDINC
        (encode_frame(FrameType.WNDINC, 0, b"\0\0\0\1"), ErrorCode.PROTOCOL),  # WNDINC on stream 0
        (
            encode_frame(FrameType.DATA, 1, b"", mux.SYN)
            + encode_frame(FrameType.WNDINC, 1, b"\x7f\xff\xff\xff"),
            ErrorCode.FLOW_CONTROL,
        ),  # window overflow
        (encode_frame(FrameType.RST, 1, b"\0"), ErrorCode.PROTOCOL),  # short RST
        (encode_frame(FrameType.RST, 0, b"\0\0\0\0"), ErrorCode.PROTOCOL),  # RST on stream 0
        (encode_frame(FrameType.GOAWAY, 0, b"\0" * 7), ErrorCode.PROTOCOL),  # short GOAWAY
        (encode_frame(FrameType.GOAWAY, 1, b"\0" * 8), ErrorCode.PROTOCOL),  # GOAWAY off stream 0
        (struct.pack(">II", (4 << 8) | (7 << 4), 1) + b"\0\0\0\0", ErrorCode.PROTOCOL),  # unknown type
        (
            struct.pack(">II", (0xFFFFFF << 8) | 0x10, 1),
            ErrorCode.FRAME_SIZE,
        ),  # oversized, refused at the header
        (
            encode_frame(FrameType.GOAWAY, 0, b"\0" * 8) + encode_frame(FrameType.DATA, 1, b"", mux.SYN),
            ErrorCode.PROTOCOL,
        ),  # a new stream after the peer's GOAWAY
    ],
)
def test_peer_errors_end_the_connection_with_a_go_away(wire: bytes, code: ErrorCode) -> None:
    server = mux.Connection(client_side=False)
    events = server.receive_data(wire)
    assert terminated(events) == code
    sent = frames(server.data_to_send())
    assert sent[-1][0] == FrameType.GOAWAY and sent[-1][2] == 0
    assert int.from_bytes(sent[-1][3][4:8], "big") == code
    assert server.closed and server.receive_data(encode_frame(FrameType.DATA, 9, b"", mux.SYN)) == []


def test_a_flood_of_streams_ends_the_connection() -> None:
    server = mux.Connection(client_side=False, max_streams=10)
    wire = b"".join(encode_frame(FrameType.DATA, 2 * i + 1, b"", mux.SYN) for i in range(11))
    events = server.receive_data(wire)
    assert sum(isinstance(e, mux.StreamOpened) for e in events) == 10
    assert terminated(events) == ErrorCode.ENHANCE_YOUR_CALM


def test_sending_on_a_closed_stream_is_refused() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.end_stream(stream_id)
    client.end_stream(stream_id)  # idempotent
    with pytest.raises(mux.LocalProtocolError):
        client.send_data(stream_id, b"x")
    with pytest.raises(mux.LocalProtocolError):
        client.send_data(99, b"x")


def test_large_sends_are_split_into_frames() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"y" * 150_000)
    sizes = [len(f[3]) for f in frames(client.data_to_send())]
    assert sizes == [65536, 65536, 150_000 - 131072]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4096), st.lists(st.integers(1, 64), max_size=50))
def test_fuzz_arbitrary_bytes_never_crash_or_hang(data: bytes, cuts: list[int]) -> None:
    server = mux.Connection(client_side=False, max_streams=64)
    started = time.monotonic()
    position = 0
    for cut in [*cuts, len(data)]:
        events = server.receive_data(data[position : position + cut])
        assert all(isinstance(e, mux.Event.__args__) for e in events)  # type: ignore[attr-defined]
        position += cut
        if position >= len(data):
            break
    server.data_to_send()
    assert time.monotonic() - started < 2


frame_strategy = st.builds(
    lambda kind, flags, stream_id, payload: (
        struct.pack(">II", (len(payload) << 8) | (kind << 4) | flags, stream_id) + payload
    ),
    st.integers(0, 4),
    st.integers(0, 15),
    st.sampled_from([0, 1, 2, 3, 5, 7, 0x7FFFFFFF]),
    st.binary(max_size=64),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(frame_strategy, max_size=40))
def test_fuzz_well_framed_nonsense_never_crashes(wire: list[bytes]) -> None:
    server = mux.Connection(client_side=False, max_streams=8)
    for frame in wire:
        server.receive_data(frame)
        server.data_to_send()
    assert server.open_stream_count <= 8


def test_syns_may_arrive_out_of_order() -> None:
    """Agents pick ids at open and send SYN on first write: concurrent streams race."""
    server = mux.Connection(client_side=False)
    events = server.receive_data(
        encode_frame(FrameType.DATA, 7, b"b", mux.SYN) + encode_frame(FrameType.DATA, 5, b"a", mux.SYN)
    )
    assert [e for e in events if isinstance(e, mux.StreamOpened)] == [
        mux.StreamOpened(7),
        mux.StreamOpened(5),
    ]
    assert not server.closed


def test_an_oversized_frame_is_refused_from_a_partial_header() -> None:
    """The header alone, even split across reads, is enough to refuse a frame too large."""
    server = mux.Connection(client_side=False)
    header = struct.pack(">II", (0xFFFFFF << 8) | 0x10, 1)
    assert server.receive_data(encode_frame(FrameType.DATA, 1, b"x", mux.SYN) + header[:3]) != []
    assert not server.closed
    assert terminated(server.receive_data(header[3:])) == ErrorCode.FRAME_SIZE
    assert server.closed


def test_a_frame_completed_across_reads_keeps_the_data_that_follows() -> None:
    server = mux.Connection(client_side=False)
    wire = encode_frame(FrameType.DATA, 1, b"a" * 100, mux.SYN) + encode_frame(FrameType.DATA, 1, b"b" * 50)
    first = server.receive_data(wire[:60])
    rest = server.receive_data(wire[60:] + encode_frame(FrameType.DATA, 1, b"c" * 10, mux.FIN))
    data = b"".join(e.data for e in first + rest if isinstance(e, mux.DataReceived))
    assert data == b"a" * 100 + b"b" * 50 + b"c" * 10
    assert isinstance(rest[-1], mux.StreamEnded)
