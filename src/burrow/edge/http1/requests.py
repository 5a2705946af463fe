"""The client side: requests parsed strictly, one at a time (RFC 9112).

Bytes go in with :meth:`RequestParser.receive`; :meth:`RequestParser.next_event` hands
out a :class:`RequestHead`, :class:`BodyData` pieces and :data:`MESSAGE_END`, then None
until :meth:`RequestParser.start_next`: a pipelined request stays unparsed in the buffer
(its reader paused) until the previous one is answered. Faults raise
:class:`RemoteProtocolError` with the status to answer, and every later call does too.
"""

from __future__ import annotations

import re

from .chunked import ChunkedDecoder
from .errors import LocalProtocolError, RemoteProtocolError
from .events import MESSAGE_END, BodyData, MessageEnd, RequestHead
from .fields import (
    CHUNKED,
    FIELD_LINES,
    LENGTH,
    NO_BODY,
    NO_TOKENS,
    TOKEN,
    bare_line_break,
    body_framing,
    split_fields,
    tab_in_coding,
    tokens,
)

# method SP request-target SP HTTP-version CRLF, field lines, CRLF. The target is visible
# ASCII; any version is matched so that a well-formed other one gets 505, not 400.
_HEAD = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]++) HTTP/([0-9]\.[0-9])\r\n(" + FIELD_LINES + rb")\r\n")
_HEAD_START, _BODY, _CHUNKS, _END, _DONE, _FAILED = range(6)
_NO_BODY_METHODS = frozenset({b"GET", b"HEAD"})
MAX_LEADING_CRLF = 8  # empty lines tolerated before a request line (RFC 9112 section 2.2)

RequestEvent = RequestHead | BodyData | MessageEnd


class RequestParser:
    def __init__(self, max_head_bytes: int = 64 * 1024, max_headers: int = 100) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._buffer = b""
        self._state = _HEAD_START
        self._remaining = 0
        self._chunks: ChunkedDecoder | None = None
        self._error: RemoteProtocolError | None = None
        self.head: RequestHead | None = None  # the request being received or answered

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out."""
        return len(self._buffer)

    @property
    def in_body(self) -> bool:
        return self._state in (_BODY, _CHUNKS)

    @property
    def complete(self) -> bool:
        """The current request has been received whole."""
        return self._state in (_END, _DONE)

    @property
    def between_requests(self) -> bool:
        return self._state == _HEAD_START and not self._buffer

    def receive(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data

    def take_rest(self) -> bytes:
        """What follows the current request (after an upgrade: the new protocol's bytes)."""
        if self._state != _DONE:
            raise LocalProtocolError("the request is not complete")
        rest, self._buffer = self._buffer, b""
        self._state = _FAILED  # nothing more is parsed on this connection
        self._error = RemoteProtocolError("the connection has left HTTP/1.1")
        return rest

    def start_next(self) -> None:
        """The current request is answered: the next one may be parsed."""
        if self._state != _DONE:
            raise LocalProtocolError("the request is not complete")
        self._state = _HEAD_START
        self.head = None

    def end_bodiless(self) -> bool | None:
        """The hot path of small requests: right after a head with no body (and no upgrade),
        the request is complete and the next may be parsed, as after :data:`MESSAGE_END`
        and :meth:`start_next` (neither of which then comes). Returns whether more bytes
        are buffered (the next request's); None otherwise, and nothing changes."""
        if self._state != _END or self.head is None or self.head.upgrade:
            return None
        self._state = _HEAD_START
        self.head = None
        return bool(self._buffer)

    def next_event(self) -> RequestEvent | None:
        """The next event, or None: more bytes are needed, or the request is complete and
        the next waits for :meth:`start_next`."""
        state = self._state
        try:
            if state == _BODY:
                return self._body()
            if state == _HEAD_START:
                return self._head() if self._buffer else None
            if state == _CHUNKS:
                return self._chunked()
            if state == _END:
                self._state = _DONE
                return MESSAGE_END
            if state == _FAILED:
                assert self._error is not None
                raise self._error
            return None
        except RemoteProtocolError as error:
            self._state, self._error = _FAILED, error
            raise

    def _head(self) -> RequestHead | None:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            skipped = 0
            while buffer.startswith(b"\r\n", skipped):
                skipped += 2
            if skipped > 2 * MAX_LEADING_CRLF:
                raise RemoteProtocolError("too many empty lines before the request")
            buffer = self._buffer = buffer[skipped:]
            if not buffer:
                return None
        end = buffer.find(b"\r\n\r\n", 0, self.max_head_bytes + 4)
        if end < 0:
            if len(buffer) >= self.max_head_bytes + 4:
                raise RemoteProtocolError("the request head is too large", 431)
            if bare_line_break(buffer):
                raise RemoteProtocolError("a line ends without CRLF")
            return None
        match = _HEAD.fullmatch(buffer, 0, end + 4)
        if match is None:
            raise RemoteProtocolError("malformed request head")
        method, target, version, block = match.groups()
        if version not in (b"1.1", b"1.0"):
            raise RemoteProtocolError("only HTTP/1.0 and HTTP/1.1 are served", 505)
        if block.count(b"\r\n") > self.max_headers:
            raise RemoteProtocolError("too many header fields", 431)
        noted: dict[bytes, list[bytes]] = {}
        headers = split_fields(block, noted)
        if b"transfer-encoding" in noted and tab_in_coding(block):
            raise RemoteProtocolError("a tab in Transfer-Encoding", 501)
        if b"host" in noted and noted[b"host"][1:]:
            raise RemoteProtocolError("more than one Host")
        if b"transfer-encoding" in noted or b"content-length" in noted:
            framing, length = body_framing(noted, version == b"1.0")
            if (framing == CHUNKED or length) and method in _NO_BODY_METHODS:
                raise RemoteProtocolError(f"a {method.decode()} request with a body")
        else:
            framing, length = NO_BODY, 0
        named = tokens(noted[b"connection"]) if b"connection" in noted else NO_TOKENS
        head = self.head = RequestHead(method, target, version, headers, noted, framing, length, named)
        self._buffer = buffer[end + 4 :]
        if framing == LENGTH and length:
            self._state, self._remaining = _BODY, length
        elif framing == CHUNKED:
            self._state, self._chunks = _CHUNKS, ChunkedDecoder()
        else:
            self._state = _END
        return head

    def _body(self) -> BodyData | None:
        buffer = self._buffer
        if not buffer:
            return None
        remaining = self._remaining
        if len(buffer) <= remaining:
            self._buffer = b""
            self._remaining = remaining = remaining - len(buffer)
            data = buffer
        else:
            data, self._buffer = buffer[:remaining], buffer[remaining:]
            self._remaining = remaining = 0
        if not remaining:
            self._state = _END
        return BodyData(data)

    def _chunked(self) -> BodyData | MessageEnd | None:
        decoder = self._chunks
        assert decoder is not None
        pieces: list[bytes] = []
        used = decoder.feed(self._buffer, pieces)
        self._buffer = self._buffer[used:]
        if decoder.done:
            self._state = _END
        if pieces:
            return BodyData(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if decoder.done:
            self._state = _DONE
            return MESSAGE_END
        return None
