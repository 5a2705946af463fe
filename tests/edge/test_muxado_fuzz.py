"""Fuzzing the muxado session: whatever bytes arrive, in whatever chunks, it never raises,
never hangs, and only ever writes well-formed frames; and two of our own sessions, driven
at random, never find each other at fault."""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from burrow.edge.muxado.frames import (
    MAX_PAYLOAD,
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

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVENT_TYPES = (
    StreamOpened,
    DataReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
    GoAwayReceived,
    ConnectionTerminated,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


def feed(session: Session, chunks: list[bytes], acknowledge: bool) -> list[Event]:
    """Feed every chunk, checking the session's promises after each one."""
    events: list[Event] = []
    for chunk in chunks:
        started = time.monotonic()
        new = session.receive_data(chunk)
        assert time.monotonic() - started < 2  # no chunk of a few KiB takes long
        assert all(isinstance(event, EVENT_TYPES) for event in new)
        if events and isinstance(events[-1], ConnectionTerminated):
            assert new == []  # nothing after the end
        events.extend(new)
        if acknowledge:
            for event in new:
                if isinstance(event, DataReceived):
                    session.acknowledge_received_data(event.stream_id, len(event.data))
    terminations = [i for i, event in enumerate(events) if isinstance(event, ConnectionTerminated)]
    assert terminations in ([], [len(events) - 1])
    assert session.terminated == bool(terminations)
    assert_well_formed(session.data_to_send())
    return events


def assert_well_formed(output: bytes) -> None:
    parser = FrameParser(MAX_PAYLOAD)
    parser.feed(output)
    frames = list(parser)  # raises on anything malformed
    assert parser.buffered == 0
    for frame in frames:
        if isinstance(frame, DataFrame):
            assert len(frame.data) <= WINDOW_SIZE


def normalized(events: list[Event]) -> list[Event]:
    """Events with runs of data merged, which chunk boundaries decide."""
    out: list[Event] = []
    for event in events:
        last = out[-1] if out else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.stream_id == event.stream_id
        ):
            out[-1] = DataReceived(event.stream_id, last.data + event.data)
        else:
            out.append(event)
    return out


# Arbitrary bytes ----------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=4096), cuts=st.lists(st.integers(min_value=0), max_size=20), ack=st.booleans())
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int], ack: bool) -> None:
    feed(Session(client_side=False), chunked(data, cuts), ack)


# Plausible frames, and garbage among them ---------------------------------------------

# Mostly a few small ids, so that frames meet streams that exist.
small_ids = st.integers(min_value=1, max_value=9)
stream_ids = small_ids | small_ids | small_ids | st.integers(min_value=1, max_value=0x7FFFFFFF)
payloads = st.binary(max_size=64) | st.integers(min_value=0, max_value=WINDOW_SIZE + 8).map(bytes)
codes = st.sampled_from(list(ErrorCode)) | st.integers(min_value=0, max_value=0xFFFFFFFF)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(DataFrame, stream_ids, payloads, st.booleans(), st.booleans()),
    st.builds(DataFrame, small_ids, st.binary(max_size=16), st.just(True), st.booleans()),
    st.builds(DataFrame, small_ids, st.binary(max_size=16), st.just(True), st.booleans()),
    st.builds(RstFrame, stream_ids, codes),
    st.builds(WndIncFrame, stream_ids, st.integers(min_value=0, max_value=0x7FFFFFFF)),
    st.builds(GoAwayFrame, st.integers(min_value=0, max_value=0x7FFFFFFF), codes, st.binary(max_size=32)),
)
encoded = frames.map(lambda frame: frame.encode())
garbage = st.binary(min_size=1, max_size=12)
pieces = st.lists(encoded | encoded | encoded | encoded | garbage, max_size=25)


@FUZZ
@given(pieces=pieces, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_frames_and_garbage_in_any_chunking_give_the_same_events(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    whole = feed(Session(client_side=False), [data], acknowledge=False)
    pieced = feed(Session(client_side=False), chunked(data, cuts), acknowledge=False)
    assert normalized(pieced) == normalized(whole)
    received: defaultdict[int, int] = defaultdict(int)
    for event in whole:
        if isinstance(event, DataReceived):
            received[event.stream_id] += len(event.data)
        elif isinstance(event, StreamOpened):
            received[event.stream_id] = 0
    assert all(size <= WINDOW_SIZE for size in received.values())  # never past a window


@FUZZ
@given(pieces=pieces, cuts=st.lists(st.integers(min_value=0), max_size=30), client_side=st.booleans())
def test_frames_with_an_application_acknowledging(
    pieces: list[bytes], cuts: list[int], client_side: bool
) -> None:
    feed(Session(client_side=client_side, max_streams=4), chunked(b"".join(pieces), cuts), acknowledge=True)


# Two of our own sessions, driven at random --------------------------------------------

operations = st.lists(
    st.tuples(
        st.booleans(),  # which side acts
        st.sampled_from(
            # go_away is rarer: it stops all opening.
            [
                "open",
                "send",
                "send",
                "send",
                "end",
                "reset",
                "close",
                "ack",
                "ack",
                "deliver",
                "deliver",
                "go_away",
            ]
        ),
        st.integers(min_value=0, max_value=7),  # which stream
        st.integers(min_value=0, max_value=3 * WINDOW_SIZE // 2),  # how many bytes
    ),
    max_size=40,
)


@FUZZ
@given(operations=operations)
def test_our_sessions_never_fault_each_other(operations: list[tuple[bool, str, int, int]]) -> None:
    sides = {True: Session(client_side=True, max_outbound_frame=4096), False: Session(client_side=False)}
    known: dict[bool, list[int]] = {True: [], False: []}  # stream ids each side has seen
    written: defaultdict[tuple[bool, int], bytearray] = defaultdict(bytearray)
    read: defaultdict[tuple[bool, int], bytearray] = defaultdict(bytearray)
    unacknowledged: defaultdict[tuple[bool, int], int] = defaultdict(int)
    disturbed: set[int] = set()  # reset or closed streams: their data may be cut short

    def deliver(sender: bool) -> None:
        receiver = not sender
        for event in sides[receiver].receive_data(sides[sender].data_to_send()):
            assert not isinstance(event, ConnectionTerminated), event
            if isinstance(event, StreamOpened):
                known[receiver].append(event.stream_id)
            elif isinstance(event, DataReceived):
                read[sender, event.stream_id] += event.data
                unacknowledged[receiver, event.stream_id] += len(event.data)
            elif isinstance(event, StreamReset):
                disturbed.add(event.stream_id)

    for side in (True, False):  # a few streams each way, so that operations meet streams
        for _ in range(2):
            stream_id = sides[side].open_stream()
            known[side].append(stream_id)
            sides[side].send_data(stream_id, b"hi")
            written[side, stream_id] += b"hi"
        deliver(side)
    for side, operation, which, size in operations:
        session = sides[side]
        stream_id = known[side][which % len(known[side])] if known[side] else 0
        try:
            if operation == "open":
                known[side].append(session.open_stream())
            elif operation == "send" and stream_id:
                payload = bytes([stream_id % 256]) * size
                taken = session.send_data(stream_id, payload)
                assert taken <= size
                written[side, stream_id] += payload[:taken]
            elif operation == "end" and stream_id:
                session.end_stream(stream_id)
            elif operation == "reset" and stream_id:
                session.reset_stream(stream_id, ErrorCode.CANCELLED)
                disturbed.add(stream_id)
            elif operation == "close" and stream_id:
                session.close_stream(stream_id)
                disturbed.add(stream_id)
            elif operation == "ack" and stream_id:
                amount = min(size, unacknowledged[side, stream_id])
                session.acknowledge_received_data(stream_id, amount)
                unacknowledged[side, stream_id] -= amount
            elif operation == "go_away":
                session.go_away(ErrorCode.NONE, "bye")
            elif operation == "deliver":
                deliver(side)
        except (StreamClosedError, SessionClosedError):
            pass  # refusing a misuse is fine; faulting the peer is not
    deliver(True)
    deliver(False)
    assert not sides[True].terminated and not sides[False].terminated
    for (side, stream_id), data in written.items():
        if stream_id not in disturbed:
            assert read[side, stream_id] == data
