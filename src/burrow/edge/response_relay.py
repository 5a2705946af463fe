"""Agent -> client on one proxy stream, sans-IO: the agent's bytes in; out, the client's
bytes (heads re-serialised from what was parsed, bodies re-framed) and the points where a
response ends or the stream turns into a tunnel, for the connection to act on.

Nothing here touches a socket. A fault raises ``RemoteProtocolError``; nothing of the
faulty answer is to reach the client. One read holds at most one answer's end: requests go
one at a time, so bytes after an answer's end cannot answer the next request (the agent
had not received it) and are a fault (``http1.responses``).
"""

from __future__ import annotations

from .client_head import final_head, upgrade_head
from .http1 import BodyData, RemoteProtocolError, ResponseHead, ResponseParser
from .http1.serialize import IDENTITY, BodyEncoder, interim_head, response_fields
from .proxy_request import ProxyRequest

MAX_RESPONSE_HEAD = 64 * 1024
UPGRADED = object()  # what receive() returns once a 101 turned the stream into a tunnel


class ResponseRelay:
    __slots__ = ("_encoder", "_parser", "request", "reusable", "tunneling")

    def __init__(self) -> None:
        self._parser = ResponseParser(MAX_RESPONSE_HEAD)
        self._encoder: BodyEncoder = IDENTITY
        self.request: ProxyRequest | None = None  # the request whose answer is awaited
        self.reusable = True  # the stream may carry the next request
        self.tunneling = False  # after a 101: raw bytes both ways

    @property
    def awaiting_head(self) -> bool:
        return self._parser.awaiting_head

    def expect(self, request: ProxyRequest) -> None:
        """``request`` went out on the stream; its answer may come."""
        self.request = request
        self._parser.expect(request.method, request.upgrade)

    def passthrough(self, data: bytes) -> bool:
        """Bytes to forward as they are (a tunnel, or wholly inside a Content-Length body
        sent as it came): counted, no copy, no scan."""
        request = self.request
        if self.tunneling or (self._encoder is IDENTITY and self._parser.passthrough(data)):
            if request is not None:
                request.bytes_out += len(data)
            return True
        return False

    def receive(self, data: bytes, out: list[bytes], last: bool) -> ProxyRequest | object | None:
        """Parse ``data``, appending the client's bytes to ``out``: the request whose answer
        ended, UPGRADED, or None. ``last``: the client has ended its side and no request
        waits. On a fault, ``out`` is emptied (nothing of a faulty answer reaches the
        client) and, if the head had not gone out, the request's status is reset to 0 (it
        can still be answered 502); then ``RemoteProtocolError`` is raised."""
        request = self.request
        head_sent = request is not None and request.status != 0
        try:
            return self._receive(data, out, last)
        except RemoteProtocolError:
            out.clear()
            if request is not None and not head_sent:
                request.status = 0
            raise

    def _receive(self, data: bytes, out: list[bytes], last: bool) -> ProxyRequest | object | None:
        parser = self._parser
        parser.receive(data)
        request = self.request
        while (event := parser.next_event()) is not None:
            assert request is not None  # the parser expects a response only while one is due
            if type(event) is BodyData:
                piece = self._encoder.piece(event.data)
                request.bytes_out += len(piece)
                out.append(piece)
            elif type(event) is ResponseHead:
                if self._head(request, event, out, last):
                    return UPGRADED
                if self._encoder is IDENTITY and (body := parser.take_whole_body()) is not None:
                    request.bytes_out += len(body)
                    out.append(body)
                    self.request = None
                    return request
            else:
                return self._end(request, out)
        return None

    def receive_eof(self, out: list[bytes]) -> ProxyRequest | None:
        """The agent ended the stream: the request whose body that ended, else None."""
        request = self.request
        try:
            ended = self._parser.receive_eof()
        except RemoteProtocolError:
            return None
        if ended is None or request is None:
            return None
        return self._end(request, out)

    def _end(self, request: ProxyRequest, out: list[bytes]) -> ProxyRequest:
        out.append(self._encoder.end())
        self._encoder = IDENTITY
        self.request = None
        return request

    def _head(self, request: ProxyRequest, response: ResponseHead, out: list[bytes], last: bool) -> bool:
        """A parsed response head, re-serialised for the client; True after a 101."""
        status = response.status
        if status == 101:  # the parser allows it only after an upgrade request
            out.append(upgrade_head(request, response))
            self.tunneling, self.reusable = True, False
            rest = self._parser.take_rest()
            if rest:
                request.bytes_out += len(rest)
                out.append(rest)
            return True
        if status < 200:
            if request.version == "1.1":  # HTTP/1.0 clients get no interim responses
                out.append(interim_head(response, response_fields(response)))
            return False
        if not response.keep_alive or request.upgrade:
            self.reusable = False
        head, self._encoder = final_head(request, response, last)
        out.append(head)
        return False
