"""A sans-IO HTTP/1.1 core for the edge's proxy, after h11: bytes in, events out, no
sockets. Strict parsers for requests (:mod:`.requests`) and the agent's responses
(:mod:`.responses`), and one serialiser (:mod:`.serialize`) for everything that goes out.
docs/edge.md ("The HTTP proxy") lists what is refused."""

from .errors import LocalProtocolError, RemoteProtocolError
from .events import MESSAGE_END, BodyData, MessageEnd, RequestHead, ResponseHead
from .fields import CHUNKED, HOP_BY_HOP, LENGTH, NO_BODY, TUNNEL, UNTIL_CLOSE, Headers
from .requests import RequestParser
from .responses import ResponseParser

__all__ = [
    "CHUNKED",
    "HOP_BY_HOP",
    "LENGTH",
    "MESSAGE_END",
    "NO_BODY",
    "TUNNEL",
    "UNTIL_CLOSE",
    "BodyData",
    "Headers",
    "LocalProtocolError",
    "MessageEnd",
    "RemoteProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
]
