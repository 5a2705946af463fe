"""The muxado session state machine: a client and a server wired back to back, and raw
frames for what a well-behaved peer would never send."""

from __future__ import annotations

import pytest

from burrow.edge.muxado.frames import (
    DataFrame,
    ErrorCode,
    Frame,
    FrameParser,
    GoAwayFrame,
    RstFrame,
    WndIncFrame,
)
from burrow.edge.muxado.session import (
    WINDOW_SIZE,
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


def pair(**options: int) -> tuple[Session, Session]:
    return Session(client_side=True, **options), Session(client_side=False, **options)


def pump(sender: Session, receiver: Session) -> list[Event]:
    return receiver.receive_data(sender.data_to_send())


def sent(session: Session) -> list[Frame]:
    """The frames a session queued, decoded by an independent parser."""
    parser = FrameParser(0xFFFFFF)
    parser.feed(session.data_to_send())
    frames = list(parser)
    assert parser.buffered == 0
    return frames


def wire(*frames: Frame) -> bytes:
    return b"".join(frame.encode() for frame in frames)


def assert_terminated(session: Session, events: list[Event], code: ErrorCode) -> None:
    """The last event ends the session; a GOAWAY with ``code`` leaves; nothing more works."""
    assert isinstance(events[-1], ConnectionTerminated), events
    assert events[-1].code is code
    goaway = sent(session)
    assert len(goaway) == 1 and isinstance(goaway[0], GoAwayFrame)
    assert goaway[0].code == code and goaway[0].last_stream_id == session.last_remote_stream_id
    assert goaway[0].message.decode() == events[-1].message
    assert session.terminated and session.stream_count == 0
    assert session.receive_data(DataFrame(101, b"x", syn=True).encode()) == []
    with pytest.raises(SessionClosedError):
        session.open_stream()
    with pytest.raises(SessionClosedError):
        session.send_data(1, b"x")
    with pytest.raises(SessionClosedError):
        session.end_stream(1)
    session.reset_stream(1)
    session.close_stream(1)
    session.go_away(ErrorCode.NONE, "again")
    assert session.outbound_window(1) == 0
    assert session.data_to_send() == b""


# Opening, sending, ending -------------------------------------------------------------


def test_stream_ids_follow_the_agents_numbering() -> None:
    client, server = pair()
    assert [client.open_stream() for _ in range(3)] == [3, 5, 7]  # the first seen on the wire is 3
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]


def test_the_syn_rides_on_the_first_data_frame() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    assert client.data_to_send() == b""  # opening alone says nothing
    assert client.send_data(stream_id, b"hello") == 5
    assert client.send_data(stream_id, b" world") == 6
    frames = sent(client)
    assert frames == [DataFrame(3, b"hello", syn=True), DataFrame(3, b" world")]
    events = server.receive_data(wire(*frames))
    assert events == [StreamOpened(3), DataReceived(3, b"hello world")]  # one event per run
    assert server.has_stream(3) and server.last_remote_stream_id == 3


def test_announcing_and_ending_a_fresh_stream() -> None:
    client, _ = pair()
    announced, ended = client.open_stream(), client.open_stream()
    assert client.send_data(announced, b"") == 0
    client.end_stream(ended)
    assert client.send_data(announced, b"") == 0  # already announced: nothing to send
    assert sent(client) == [DataFrame(3, syn=True), DataFrame(5, syn=True, fin=True)]


def test_half_close_both_ways_then_the_stream_is_forgotten() -> None:
    client, server = pair()
    stream_id = server.open_stream()
    server.send_data(stream_id, b"request", end_stream=True)
    assert pump(server, client) == [StreamOpened(2), DataReceived(2, b"request"), StreamEnded(2)]
    assert client.has_stream(2) and server.has_stream(2)  # each still has a direction open
    with pytest.raises(StreamClosedError):
        server.send_data(stream_id, b"more")
    with pytest.raises(StreamClosedError):
        server.end_stream(stream_id)
    assert client.send_data(2, b"response") == 8
    client.end_stream(2)
    assert pump(client, server) == [DataReceived(2, b"response"), StreamEnded(2)]
    assert not client.has_stream(2) and not server.has_stream(2)
    assert client.stream_count == server.stream_count == 0


def test_syn_data_and_fin_in_one_frame() -> None:
    _, server = pair()
    events = server.receive_data(DataFrame(3, b"all", syn=True, fin=True).encode())
    assert events == [StreamOpened(3), DataReceived(3, b"all"), StreamEnded(3)]


def test_repeated_empty_fin_is_harmless() -> None:
    _, server = pair()
    server.receive_data(wire(DataFrame(3, syn=True, fin=True)))
    assert server.receive_data(wire(DataFrame(3, fin=True), DataFrame(3))) == []
    assert not server.terminated and server.data_to_send() == b""


def test_syns_may_arrive_out_of_order() -> None:
    """Go and Rust agents allocate ids at open and send the SYN at first write."""
    _, server = pair()
    events = server.receive_data(wire(DataFrame(7, b"a", syn=True), DataFrame(3, b"b", syn=True)))
    assert events == [StreamOpened(7), DataReceived(7, b"a"), StreamOpened(3), DataReceived(3, b"b")]
    assert server.last_remote_stream_id == 7


def test_runs_are_merged_per_stream_only() -> None:
    _, server = pair()
    events = server.receive_data(
        wire(
            DataFrame(3, b"a", syn=True),
            DataFrame(3, b"b"),
            DataFrame(5, b"c", syn=True),
            DataFrame(3, b"d"),
            DataFrame(3, b"e"),
        )
    )
    assert events == [
        StreamOpened(3),
        DataReceived(3, b"ab"),
        StreamOpened(5),
        DataReceived(5, b"c"),
        DataReceived(3, b"de"),
    ]


def test_large_writes_are_split_into_frames() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    assert client.send_data(stream_id, bytes(200 * 1024), end_stream=True) == 200 * 1024
    frames = sent(client)
    assert [len(f.data) for f in frames if isinstance(f, DataFrame)] == [65536, 65536, 65536, 8192]
    assert [(f.syn, f.fin) for f in frames if isinstance(f, DataFrame)] == [
        (True, False),
        (False, False),
        (False, False),
        (False, True),
    ]
    small = Session(client_side=True, max_outbound_frame=10)
    small.send_data(small.open_stream(), b"x" * 25)
    assert [len(f.data) for f in sent(small) if isinstance(f, DataFrame)] == [10, 10, 5]
    with pytest.raises(ValueError):
        Session(client_side=True, max_outbound_frame=0)
    with pytest.raises(ValueError):
        Session(client_side=True, max_streams=0)


def test_mutable_buffers_are_copied_immutable_ones_need_not_be() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    buffer = bytearray(b"original")
    client.send_data(stream_id, buffer)
    buffer[:] = b"changed!"
    client.send_data(stream_id, memoryview(b"view of bytes")[:4])
    assert server.receive_data(client.data_to_send())[1] == DataReceived(3, b"originalview")


def test_sending_on_streams_we_do_not_have() -> None:
    client, _ = pair()
    with pytest.raises(StreamClosedError):
        client.send_data(9, b"x")
    with pytest.raises(StreamClosedError):
        client.end_stream(9)
    assert client.outbound_window(9) == 0
    client.reset_stream(9)
    client.close_stream(9)
    client.acknowledge_received_data(9, 10)
    assert client.data_to_send() == b""


def test_stream_ids_run_out() -> None:
    client, _ = pair()
    client._next_local_id = 0x7FFFFFFF  # the last odd id
    assert client.open_stream() == 0x7FFFFFFF
    with pytest.raises(SessionClosedError, match="exhausted"):
        client.open_stream()


# Flow control -------------------------------------------------------------------------


def test_sending_stops_at_the_window_and_resumes_with_credit() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    assert client.outbound_window(stream_id) == WINDOW_SIZE
    assert client.send_data(stream_id, bytes(WINDOW_SIZE + 10), end_stream=True) == WINDOW_SIZE
    assert client.outbound_window(stream_id) == 0
    assert client.send_data(stream_id, b"more") == 0
    events = pump(client, server)
    assert sum(len(e.data) for e in events if isinstance(e, DataReceived)) == WINDOW_SIZE
    assert not any(isinstance(e, StreamEnded) for e in events)  # FIN only with the last byte
    assert server.data_to_send() == b""  # credit is not returned until the data is consumed
    server.acknowledge_received_data(stream_id, 1000)
    assert sent(server) == [WndIncFrame(stream_id, 1000)]
    server.acknowledge_received_data(stream_id, 24)
    assert pump(server, client) == [WindowUpdated(stream_id, 24)]
    assert client.outbound_window(stream_id) == 24


def test_credit_round_trip_moves_several_windows() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    payload = bytes(range(256)) * 4096  # 1 MiB, four windows
    offset, received = 0, bytearray()
    while offset < len(payload):
        offset += client.send_data(stream_id, payload[offset:])
        for event in pump(client, server):
            if isinstance(event, DataReceived):
                received += event.data
                server.acknowledge_received_data(stream_id, len(event.data))
        assert all(isinstance(e, WindowUpdated) for e in pump(server, client))
    assert received == payload


def test_acknowledging_more_than_received_is_a_bug_in_the_caller() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"12345")
    pump(client, server)
    with pytest.raises(ValueError):
        server.acknowledge_received_data(stream_id, 6)
    with pytest.raises(ValueError):
        server.acknowledge_received_data(stream_id, -1)
    server.acknowledge_received_data(stream_id, 0)
    assert server.data_to_send() == b""


def test_no_credit_once_the_peer_has_finished() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"last words", end_stream=True)
    pump(client, server)
    server.acknowledge_received_data(stream_id, 10)
    assert server.data_to_send() == b""


def test_window_updates() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, bytes(100))
    client.data_to_send()
    assert client.receive_data(WndIncFrame(stream_id, 0).encode()) == []  # nothing to report
    assert client.receive_data(WndIncFrame(stream_id, 100).encode()) == [WindowUpdated(stream_id, 100)]
    client.end_stream(stream_id)
    assert client.receive_data(WndIncFrame(stream_id, 5).encode()) == []  # we no longer write


def test_window_overflow_is_a_flow_control_error() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    events = client.receive_data(WndIncFrame(stream_id, 0x7FFFFFFF - WINDOW_SIZE + 1).encode())
    assert_terminated(client, events, ErrorCode.FLOW_CONTROL)


# Resets, late frames, close -----------------------------------------------------------


def test_reset_either_way() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"x")
    pump(client, server)
    server.reset_stream(stream_id, ErrorCode.REFUSED)
    assert not server.has_stream(stream_id)
    assert pump(server, client) == [StreamReset(stream_id, ErrorCode.REFUSED)]
    assert not client.has_stream(stream_id)
    with pytest.raises(StreamClosedError):
        client.send_data(stream_id, b"y")
    server.reset_stream(stream_id)  # already gone: nothing happens
    assert server.data_to_send() == b""


def test_resetting_a_stream_the_peer_never_heard_of_sends_nothing() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.reset_stream(stream_id)
    assert client.data_to_send() == b"" and not client.has_stream(stream_id)


def test_frames_for_unknown_streams_are_ignored() -> None:
    _, server = pair()
    events = server.receive_data(
        wire(RstFrame(9, ErrorCode.CANCELLED), WndIncFrame(9, 100), DataFrame(9, fin=True), DataFrame(9))
    )
    assert events == [] and not server.terminated
    assert server.data_to_send() == b""


def test_late_data_is_answered_with_rst_so_the_sender_stops() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"first")
    pump(client, server)
    server.reset_stream(stream_id)
    client.send_data(stream_id, b"in flight")  # sent before the RST arrives
    assert server.receive_data(client.data_to_send()) == []
    assert sent(server) == [
        RstFrame(stream_id, ErrorCode.CANCELLED),
        RstFrame(stream_id, ErrorCode.STREAM_CLOSED),
    ]
    assert not server.terminated


def test_close_stream_fins_forgets_and_refuses_what_follows() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"request")
    pump(client, server)
    server.close_stream(stream_id)
    assert not server.has_stream(stream_id)
    assert pump(server, client) == [StreamEnded(stream_id)]
    client.send_data(stream_id, b"unwanted")
    assert server.receive_data(client.data_to_send()) == []
    assert pump(server, client) == [StreamReset(stream_id, ErrorCode.STREAM_CLOSED)]
    # A peer that just finishes is not bothered.
    other = client.open_stream()
    client.send_data(other, b"q")
    pump(client, server)
    server.close_stream(other)
    pump(server, client)
    client.end_stream(other)
    assert server.receive_data(client.data_to_send()) == [] and server.data_to_send() == b""


def test_closing_an_unannounced_stream_says_nothing() -> None:
    client, _ = pair()
    stream_id = client.open_stream()
    client.close_stream(stream_id)
    assert client.data_to_send() == b"" and not client.has_stream(stream_id)


# GOAWAY -------------------------------------------------------------------------------


def test_go_away_is_graceful_for_open_streams() -> None:
    client, server = pair()
    stream_id = client.open_stream()
    client.send_data(stream_id, b"hi")
    pump(client, server)
    server.go_away(ErrorCode.NONE, "maintenance")
    assert server.local_going_away
    events = pump(server, client)
    assert events == [GoAwayReceived(3, ErrorCode.NONE, "maintenance")]
    assert client.remote_going_away
    with pytest.raises(SessionClosedError):
        server.open_stream()
    with pytest.raises(SessionClosedError):
        client.open_stream()
    # Stream 3 (processed by the server) carries on both ways.
    assert client.send_data(stream_id, b" there") == 6
    assert pump(client, server) == [DataReceived(stream_id, b" there")]
    assert server.send_data(stream_id, b"bye", end_stream=True) == 3
    assert pump(server, client) == [DataReceived(stream_id, b"bye"), StreamEnded(stream_id)]


def test_new_streams_after_our_go_away_are_refused_not_fatal() -> None:
    _, server = pair()
    server.go_away()
    server.data_to_send()
    assert server.receive_data(DataFrame(3, b"late", syn=True).encode()) == []
    assert sent(server) == [RstFrame(3, ErrorCode.REFUSED)]
    assert not server.terminated and not server.has_stream(3)


def test_streams_the_peer_never_processed_are_reset_by_its_go_away() -> None:
    client, server = pair()
    seen = server.open_stream()
    server.send_data(seen, b"x")
    pump(server, client)
    unseen, unannounced = server.open_stream(), server.open_stream()
    server.send_data(unseen, b"y")
    server.data_to_send()  # lost: the client is going away
    client_own = client.open_stream()
    client.send_data(client_own, b"z")
    pump(client, server)
    client.go_away(ErrorCode.NONE, "no error")
    assert pump(client, server) == [
        GoAwayReceived(seen, ErrorCode.NONE, "no error"),
        StreamReset(unseen, ErrorCode.REMOTE_GONE_AWAY),
        StreamReset(unannounced, ErrorCode.REMOTE_GONE_AWAY),
    ]
    assert server.has_stream(seen) and server.has_stream(client_own)


def test_go_away_messages_are_bounded_and_decoded_leniently() -> None:
    client, server = pair()
    client.go_away(ErrorCode.INTERNAL, "x" * 5000)
    (frame,) = sent(client)
    assert isinstance(frame, GoAwayFrame) and len(frame.message) == 1024
    events = server.receive_data(GoAwayFrame(0, 0x1234, b"bad \xff utf-8").encode())
    assert events == [GoAwayReceived(0, 0x1234, "bad \N{REPLACEMENT CHARACTER} utf-8")]


def test_ngrok_rust_goaway_arrives_before_the_desync_it_causes() -> None:
    _, server = pair()
    message = b"invalid frame"
    buggy = bytes.fromhex("00000d30 00000000 00000000 00000001") + message  # length omits 8 bytes
    events = server.receive_data(buggy)
    assert events[0] == GoAwayReceived(0, ErrorCode.PROTOCOL, "inval")
    assert_terminated(server, events, ErrorCode.PROTOCOL)


# Protocol errors ----------------------------------------------------------------------


def test_garbage_ends_the_session() -> None:
    _, server = pair()
    assert_terminated(server, server.receive_data(b"\xff" * 8), ErrorCode.PROTOCOL)  # frame type 15
    _, server = pair()
    # An HTTP client at the agent port: "GET " reads as a WNDINC of 4.6 MB.
    assert_terminated(server, server.receive_data(b"GET / HTTP/1.1\r\n\r\n"), ErrorCode.FRAME_SIZE)


def test_oversized_frames_end_the_session() -> None:
    _, server = pair(max_frame_size=4096)
    events = server.receive_data(bytes.fromhex("00100110 00000003"))  # claims 4097 bytes
    assert_terminated(server, events, ErrorCode.FRAME_SIZE)


@pytest.mark.parametrize(
    "frame",
    [
        bytes.fromhex("00000300 00000003 000000"),  # RST of 3 bytes
        bytes.fromhex("00000420 00000000 00000001"),  # WNDINC on stream 0
        bytes.fromhex("00000430 00000000 0000000000"),  # GOAWAY of 4 bytes... then junk
        bytes.fromhex("00000010 00000000"),  # DATA on stream 0
    ],
)
def test_malformed_frames_end_the_session(frame: bytes) -> None:
    _, server = pair()
    events = server.receive_data(frame)
    assert isinstance(events[-1], ConnectionTerminated)
    assert_terminated(server, events, events[-1].code)


def test_window_overrun_ends_the_session() -> None:
    _, server = pair()
    first = server.receive_data(wire(DataFrame(3, bytes(WINDOW_SIZE - 10), syn=True)))
    assert first[-1] == DataReceived(3, bytes(WINDOW_SIZE - 10))
    server.acknowledge_received_data(3, 5)  # 15 bytes of room now
    server.data_to_send()
    assert server.receive_data(DataFrame(3, bytes(15)).encode()) == [DataReceived(3, bytes(15))]
    events = server.receive_data(DataFrame(3, b"!").encode())
    assert_terminated(server, events, ErrorCode.FLOW_CONTROL)


def test_an_oversized_first_frame_overruns_too() -> None:
    _, server = pair()
    events = server.receive_data(DataFrame(3, bytes(WINDOW_SIZE + 1), syn=True).encode())
    assert events[0] == StreamOpened(3)
    assert_terminated(server, events, ErrorCode.FLOW_CONTROL)


def test_syn_for_an_open_stream_ends_the_session() -> None:
    _, server = pair()
    events = server.receive_data(wire(DataFrame(3, b"a", syn=True), DataFrame(3, b"b", syn=True)))
    assert events[:2] == [StreamOpened(3), DataReceived(3, b"a")]
    assert_terminated(server, events, ErrorCode.PROTOCOL)


@pytest.mark.parametrize(("client_side", "stream_id"), [(False, 2), (True, 3)])
def test_syn_with_the_wrong_parity_ends_the_session(client_side: bool, stream_id: int) -> None:
    session = Session(client_side=client_side)
    events = session.receive_data(DataFrame(stream_id, b"", syn=True).encode())
    assert_terminated(session, events, ErrorCode.PROTOCOL)


def test_a_stream_flood_ends_the_session_but_closed_streams_free_their_slots() -> None:
    _, server = pair(max_streams=3)
    server.receive_data(wire(*(DataFrame(i, syn=True) for i in (3, 5, 7))))
    local = server.open_stream()  # our own streams do not count against the peer
    server.send_data(local, b"x")
    server.reset_stream(3)
    server.receive_data(wire(DataFrame(5, fin=True)))
    server.close_stream(5)
    assert server.receive_data(wire(DataFrame(9, syn=True), DataFrame(11, syn=True))) == [
        StreamOpened(9),
        StreamOpened(11),
    ]
    server.data_to_send()
    events = server.receive_data(DataFrame(13, syn=True).encode())
    assert_terminated(server, events, ErrorCode.ENHANCE_YOUR_CALM)


def test_data_after_fin_ends_the_session() -> None:
    _, server = pair()
    server.receive_data(DataFrame(3, b"done", syn=True, fin=True).encode())
    events = server.receive_data(DataFrame(3, b"or not").encode())
    assert_terminated(server, events, ErrorCode.STREAM_CLOSED)


def test_events_before_an_error_are_kept_and_bytes_after_it_ignored() -> None:
    _, server = pair()
    events = server.receive_data(
        wire(DataFrame(3, b"good", syn=True)) + b"\xff" * 8 + wire(DataFrame(5, b"ignored", syn=True))
    )
    assert events[:2] == [StreamOpened(3), DataReceived(3, b"good")]
    assert len(events) == 3
    assert_terminated(server, events, ErrorCode.PROTOCOL)


def test_the_terminating_goaway_names_the_last_stream_the_peer_opened() -> None:
    _, server = pair()
    server.receive_data(wire(DataFrame(7, b"x", syn=True), DataFrame(3, b"y", syn=True)))
    events = server.receive_data(b"\xff" * 8)
    assert server.last_remote_stream_id == 7
    assert_terminated(server, events, ErrorCode.PROTOCOL)  # checks the GOAWAY says 7
