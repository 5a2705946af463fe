"""muxado, the stream multiplexing ngrok's agents speak.

:mod:`.frames` encodes and parses frames, :mod:`.session` is the connection as a pure
state machine (bytes in, events out), and :mod:`.aio` drives a session over asyncio
streams. Typed streams and heartbeats sit above this layer (``burrow.edge.messages``).
"""

from .frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FLAG_FIN,
    FLAG_SYN,
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
)
from .session import (
    DEFAULT_MAX_STREAMS,
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

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_STREAMS",
    "FLAG_FIN",
    "FLAG_SYN",
    "MAX_PAYLOAD",
    "MAX_STREAM_ID",
    "WINDOW_SIZE",
    "ConnectionTerminated",
    "DataFrame",
    "DataReceived",
    "ErrorCode",
    "Event",
    "Frame",
    "FrameParser",
    "FrameType",
    "GoAwayFrame",
    "GoAwayReceived",
    "MuxadoError",
    "ProtocolError",
    "RstFrame",
    "Session",
    "SessionClosedError",
    "StreamClosedError",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
    "WndIncFrame",
]
