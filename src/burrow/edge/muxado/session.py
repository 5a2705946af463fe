"""The muxado connection as a pure state machine (sans-IO, in the manner of h2).

Feed received bytes to :meth:`Session.receive_data` and act on the events it returns;
call the sending methods and write out :meth:`Session.data_to_send`. Nothing here
touches a socket, a clock or an event loop.

Semantics, as ngrok's agents (muxado-go, ngrok-rust) expect them:

* Stream ids: the client opens odd ids starting at 3, the server even ids starting at 2.
  A stream opens with a DATA frame flagged SYN; there is no acknowledgement, and the SYN
  rides on the stream's first DATA frame (an empty one if the application ends or
  announces the stream before writing). Peers may deliver the SYNs of concurrently
  opened streams out of order, so ids are not required to increase.
* Flow control: every stream has a fixed 256 KiB window in each direction, never
  negotiated. :meth:`Session.send_data` sends only what the peer's window allows and says
  how much that was; nothing is buffered here beyond frames ready to go out. Received
  credit is returned (WNDINC) only when the application calls
  :meth:`Session.acknowledge_received_data`, so a slow reader stalls its writer.
* FIN half-closes one direction; a stream is forgotten once both directions ended, or
  on RST either way. Frames for streams we do not know are ignored (late frames are
  normal after a reset), except that DATA carrying bytes is answered with
  RST STREAM_CLOSED so its sender stops, as both reference implementations do.
* Any violation by the peer — bad framing, an oversized frame, overrunning a window,
  a SYN with the wrong parity or for a stream already open, more concurrent streams
  than ``max_streams``, bytes after the peer's FIN — ends the connection: a
  :class:`ConnectionTerminated` event, a GOAWAY with the matching error code queued,
  and the session refuses further work. muxado-go and ngrok-rust answer a window
  overrun with a stream RST instead; a peer that overruns a fixed, known window is
  broken, so we drop it entirely.
* GOAWAY: after sending one (:meth:`Session.go_away`) we open no streams and refuse the
  peer's new ones (RST REFUSED) while existing streams run on. After receiving one we
  open no streams, and our streams above its last stream id, which the peer never
  processed, are reset with REMOTE_GONE_AWAY.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Final

from .frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_FIN,
    FLAG_SYN,
    MAX_INCREMENT,
    MAX_PAYLOAD,
    MAX_STREAM_ID,
    DataFrame,
    ErrorCode,
    Frame,
    FrameParser,
    FrameType,
    GoAwayFrame,
    MuxadoError,
    ProtocolError,
    RstFrame,
    WndIncFrame,
    encode_header,
)

WINDOW_SIZE: Final = 256 * 1024
# ngrok-rust allows 512 streams in all per session and muxado-go has no limit; an agent
# needs a handful of its own (heartbeat, control RPCs), so this is generous.
DEFAULT_MAX_STREAMS: Final = 512
DEFAULT_MAX_OUTBOUND_FRAME: Final = 64 * 1024
MAX_GOAWAY_MESSAGE: Final = 1024  # ours are short; longer ones would only be truncated by peers


# Events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Bytes for a stream. Acknowledge them once consumed, or the peer's window closes.

    Consecutive DATA frames for one stream in the same :meth:`Session.receive_data` call
    arrive as one event.
    """

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream (FIN): it will send nothing more on it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone: the peer reset it, or its GOAWAY left it unprocessed."""

    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer returned ``delta`` bytes of credit on a stream we may still write to."""

    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    last_stream_id: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionTerminated:
    """We found the peer in breach of the protocol; a GOAWAY saying so is queued.

    The session is over: write out :meth:`Session.data_to_send` and close the transport.
    """

    code: ErrorCode
    message: str


Event = (
    StreamOpened
    | DataReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | GoAwayReceived
    | ConnectionTerminated
)


# Errors raised to the application (never for anything the peer sends) -----------------


class SessionClosedError(MuxadoError):
    """The session takes no new work: it was terminated, or a GOAWAY went either way."""


class StreamClosedError(MuxadoError):
    """The stream cannot be written: unknown, reset, or already ended by us."""

    def __init__(self, stream_id: int, message: str) -> None:
        super().__init__(f"stream {stream_id}: {message}")
        self.stream_id = stream_id


# The machine ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    outbound_window: int = WINDOW_SIZE  # bytes the peer still lets us send
    unacknowledged: int = 0  # received, not yet consumed by the application
    local_ended: bool = False
    remote_ended: bool = False
    syn_pending: bool = False  # opened here; the SYN leaves with the first frame


class Session:
    def __init__(
        self,
        client_side: bool,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        max_outbound_frame: int = DEFAULT_MAX_OUTBOUND_FRAME,
    ) -> None:
        """``max_frame_size`` caps frames we accept, ``max_streams`` the streams the peer
        may have open at once, and ``max_outbound_frame`` the DATA frames we send."""
        if max_streams < 1:
            raise ValueError("max_streams must be positive")
        if not 1 <= max_outbound_frame <= MAX_PAYLOAD:
            raise ValueError(f"max_outbound_frame must be between 1 and {MAX_PAYLOAD}")
        self.client_side = client_side
        self.max_streams = max_streams
        self.max_outbound_frame = max_outbound_frame
        self._parser = FrameParser(max_frame_size)
        self._streams: dict[int, _Stream] = {}
        self._remote_stream_count = 0
        self._remote_parity = 0 if client_side else 1
        self._next_local_id = 3 if client_side else 2  # as muxado-go and ngrok-rust number them
        self._last_remote_id = 0  # highest id the peer opened: the GOAWAY we send names it
        self._outbound: list[bytes | memoryview] = []
        self.terminated = False  # a protocol error ended the session
        self.local_going_away = False
        self.remote_going_away = False

    # Inspection -----------------------------------------------------------------------

    @property
    def last_remote_stream_id(self) -> int:
        return self._last_remote_id

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def has_stream(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def outbound_window(self, stream_id: int) -> int:
        """How many bytes :meth:`send_data` would take now on this stream."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_ended or self.terminated:
            return 0
        return stream.outbound_window

    # Receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Process bytes from the peer, in chunks of any size; the events they carry.

        Never raises for anything the peer sends: a violation becomes a final
        :class:`ConnectionTerminated` event. After that, input is ignored.
        """
        if self.terminated:
            return []
        self._parser.feed(data)
        events: list[Event] = []
        try:
            for frame in self._parser:
                self._receive_frame(frame, events)
        except ProtocolError as error:
            events.append(self._terminate(error.code, error.message))
        return _merge_data_runs(events)

    def _receive_frame(self, frame: Frame, events: list[Event]) -> None:
        if isinstance(frame, DataFrame):
            self._receive_data_frame(frame, events)
        elif isinstance(frame, WndIncFrame):
            stream = self._streams.get(frame.stream_id)
            if stream is None or frame.increment == 0:
                return
            stream.outbound_window += frame.increment
            if stream.outbound_window > MAX_INCREMENT:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL, f"window of stream {frame.stream_id} grew past 2^31-1"
                )
            if not stream.local_ended:
                events.append(WindowUpdated(frame.stream_id, frame.increment))
        elif isinstance(frame, RstFrame):
            if self._forget(frame.stream_id):
                events.append(StreamReset(frame.stream_id, frame.code))
        else:
            self._receive_goaway(frame, events)

    def _receive_data_frame(self, frame: DataFrame, events: list[Event]) -> None:
        stream_id = frame.stream_id
        if frame.syn:
            if not self._accept_syn(stream_id):
                return
            events.append(StreamOpened(stream_id))
        stream = self._streams.get(stream_id)
        if stream is None:
            if frame.data:
                self._queue(RstFrame(stream_id, ErrorCode.STREAM_CLOSED).encode())
            return
        if stream.remote_ended:
            if frame.data:
                raise ProtocolError(ErrorCode.STREAM_CLOSED, f"DATA after FIN on stream {stream_id}")
            return  # a repeated empty FIN says nothing new
        size = len(frame.data)
        if size:
            if size > WINDOW_SIZE - stream.unacknowledged:
                raise ProtocolError(
                    ErrorCode.FLOW_CONTROL,
                    f"{size} bytes on stream {stream_id} overrun its window of "
                    f"{WINDOW_SIZE - stream.unacknowledged}",
                )
            stream.unacknowledged += size
            events.append(DataReceived(stream_id, frame.data))
        if frame.fin:
            stream.remote_ended = True
            events.append(StreamEnded(stream_id))
            self._forget_if_finished(stream_id, stream)

    def _accept_syn(self, stream_id: int) -> bool:
        """Register a stream the peer opens; False if we refuse it without ending the session."""
        if stream_id % 2 != self._remote_parity:
            side = "client" if self.client_side else "server"
            raise ProtocolError(ErrorCode.PROTOCOL, f"the peer opened stream {stream_id}, a {side} id")
        if stream_id in self._streams:
            raise ProtocolError(ErrorCode.PROTOCOL, f"SYN for stream {stream_id}, already open")
        if self.local_going_away:
            self._queue(RstFrame(stream_id, ErrorCode.REFUSED).encode())
            return False
        if self._remote_stream_count >= self.max_streams:
            raise ProtocolError(
                ErrorCode.ENHANCE_YOUR_CALM, f"more than {self.max_streams} concurrent streams"
            )
        self._streams[stream_id] = _Stream()
        self._remote_stream_count += 1
        self._last_remote_id = max(self._last_remote_id, stream_id)
        return True

    def _receive_goaway(self, frame: GoAwayFrame, events: list[Event]) -> None:
        self.remote_going_away = True
        message = frame.message.decode("utf-8", errors="replace")
        events.append(GoAwayReceived(frame.last_stream_id, frame.code, message))
        local_parity = 1 - self._remote_parity
        unprocessed = [
            stream_id
            for stream_id in self._streams
            if stream_id % 2 == local_parity and stream_id > frame.last_stream_id
        ]
        for stream_id in sorted(unprocessed):
            self._forget(stream_id)
            events.append(StreamReset(stream_id, ErrorCode.REMOTE_GONE_AWAY))

    # Sending --------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything queued for the peer, in order; the queue is left empty."""
        data = b"".join(self._outbound)
        self._outbound.clear()
        return data

    def open_stream(self) -> int:
        """A new stream id. The peer learns of the stream with our first frame on it."""
        if self.terminated or self.local_going_away or self.remote_going_away:
            raise SessionClosedError("the session is closing: no new streams")
        stream_id = self._next_local_id
        if stream_id > MAX_STREAM_ID:
            raise SessionClosedError("stream ids exhausted")
        self._next_local_id += 2
        self._streams[stream_id] = _Stream(syn_pending=True)
        return stream_id

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, end_stream: bool = False
    ) -> int:
        """Queue as much of ``data`` as the stream's window allows; returns how much.

        The rest is not kept: send it after a :class:`WindowUpdated`. ``end_stream`` sends
        FIN only if all of ``data`` was taken. Empty ``data`` on a stream the peer does not
        know yet announces it (a bare SYN).
        """
        stream = self._writable(stream_id)
        view = memoryview(data).cast("B")
        # Slices of immutable bytes can wait in the queue as they are; anything else may
        # change under us once we return, so it is copied.
        keep_views = isinstance(view.obj, bytes)
        taken = min(len(view), stream.outbound_window)
        fin = end_stream and taken == len(view)
        if taken == 0 and not fin and not stream.syn_pending:
            return 0
        stream.outbound_window -= taken
        step = self.max_outbound_frame
        start = 0
        while True:
            chunk = view[start : min(start + step, taken)]
            start += len(chunk)
            last = start >= taken
            self._queue_data(stream_id, stream, chunk if keep_views else bytes(chunk), fin and last)
            if last:
                break
        if fin:
            stream.local_ended = True
            self._forget_if_finished(stream_id, stream)
        return taken

    def end_stream(self, stream_id: int) -> None:
        """Half-close: we send nothing more on this stream (an empty DATA with FIN)."""
        self.send_data(stream_id, b"", end_stream=True)

    def close_stream(self, stream_id: int) -> None:
        """We are done with the stream both ways: FIN if not yet sent, then forget it.

        The peer may still finish (its FIN is ignored); bytes it sends are answered with
        RST STREAM_CLOSED. This is muxado-go's ``Stream.Close``.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self.terminated:
            return
        if not stream.local_ended and not stream.syn_pending:  # unannounced: nothing to say
            self._queue_data(stream_id, stream, b"", fin=True)
        self._forget(stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCode = ErrorCode.CANCELLED) -> None:
        """Abort the stream both ways (RST). A no-op for streams already gone."""
        stream = self._streams.get(stream_id)
        if stream is None or self.terminated:
            return
        self._forget(stream_id)
        if not stream.syn_pending:  # the peer never heard of it otherwise
            self._queue(RstFrame(stream_id, code).encode())

    def acknowledge_received_data(self, stream_id: int, size: int) -> None:
        """The application consumed ``size`` bytes of the stream: return them as credit."""
        if size < 0:
            raise ValueError("size must not be negative")
        stream = self._streams.get(stream_id)
        if stream is None or size == 0 or self.terminated:
            return
        if size > stream.unacknowledged:
            raise ValueError(
                f"acknowledging {size} bytes on stream {stream_id}, but only "
                f"{stream.unacknowledged} are outstanding"
            )
        stream.unacknowledged -= size
        if not stream.remote_ended:  # credit is useless to a peer that has finished
            self._queue(WndIncFrame(stream_id, size).encode())

    def go_away(self, code: ErrorCode = ErrorCode.NONE, message: str = "") -> None:
        """Tell the peer we are closing: no new streams either way; open ones run on."""
        if self.terminated:
            return
        self.local_going_away = True
        self._queue_goaway(code, message)

    # Internals ------------------------------------------------------------------------

    def _writable(self, stream_id: int) -> _Stream:
        if self.terminated:
            raise SessionClosedError("the session was terminated")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id, "not open")
        if stream.local_ended:
            raise StreamClosedError(stream_id, "already ended")
        return stream

    def _queue(self, frame: bytes | memoryview) -> None:
        self._outbound.append(frame)

    def _queue_data(self, stream_id: int, stream: _Stream, payload: bytes | memoryview, fin: bool) -> None:
        flags = (FLAG_SYN if stream.syn_pending else 0) | (FLAG_FIN if fin else 0)
        self._queue(encode_header(FrameType.DATA, flags, stream_id, len(payload)))
        if payload:
            self._queue(payload)  # apart from its header: data_to_send copies it once
        stream.syn_pending = False

    def _queue_goaway(self, code: ErrorCode, message: str) -> None:
        encoded = message.encode("utf-8")[:MAX_GOAWAY_MESSAGE]
        self._queue(GoAwayFrame(self._last_remote_id, code, encoded).encode())

    def _terminate(self, code: ErrorCode, message: str) -> ConnectionTerminated:
        self._queue_goaway(code, message)
        self.terminated = True
        self._streams.clear()
        self._remote_stream_count = 0
        return ConnectionTerminated(code, message)

    def _forget(self, stream_id: int) -> bool:
        if self._streams.pop(stream_id, None) is None:
            return False
        if stream_id % 2 == self._remote_parity:
            self._remote_stream_count -= 1
        return True

    def _forget_if_finished(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_ended and stream.remote_ended:
            self._forget(stream_id)


def _merge_data_runs(events: list[Event]) -> list[Event]:
    """One DataReceived per run of DATA frames for the same stream.

    Agents send many small frames (8 KiB is common); events cost far more than bytes.
    """
    if len(events) < 2:
        return events
    merged: list[Event] = []
    for stream_id, group in groupby(
        events, key=lambda event: event.stream_id if isinstance(event, DataReceived) else None
    ):
        run = list(group)
        if stream_id is None or len(run) == 1:
            merged.extend(run)
        else:
            merged.append(
                DataReceived(stream_id, b"".join(e.data for e in run if isinstance(e, DataReceived)))
            )
    return merged
