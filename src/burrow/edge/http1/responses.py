"""The agent side: responses parsed as strictly as requests, framed by the request they
answer (RFC 9112 section 6.3).

:meth:`ResponseParser.expect` says a request went out (its method, and whether it asked
for an upgrade); bytes arriving when no response is awaited (a second response in the
read that ended the first, bytes after a HEAD/204/304 response) are a fault, as is
anything malformed: the proxy answers 502 and closes, forwarding none of it.
"""

from __future__ import annotations

import re

from .chunked import ChunkedDecoder
from .errors import LocalProtocolError, RemoteProtocolError
from .events import MESSAGE_END, BodyData, MessageEnd, ResponseHead
from .fields import (
    CHUNKED,
    FIELD_LINES,
    LENGTH,
    NO_BODY,
    NO_TOKENS,
    TUNNEL,
    UNTIL_CLOSE,
    bare_line_break,
    body_framing,
    content_length,
    split_fields,
    tab_in_coding,
    tokens,
)

# HTTP-version SP 3DIGIT [SP reason-phrase] CRLF, field lines, CRLF. (The SP before an
# empty reason is often left out; nothing is ambiguous about that.)
_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?\r\n(" + FIELD_LINES + rb")\r\n"
)
_IDLE, _HEAD_START, _BODY, _CHUNKS, _UNTIL_CLOSE, _END, _TUNNEL, _FAILED = range(8)
MAX_INTERIM = 8  # 1xx responses before the final one

ResponseEvent = ResponseHead | BodyData | MessageEnd


class ResponseParser:
    def __init__(self, max_head_bytes: int = 64 * 1024, max_headers: int = 256) -> None:
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self._buffer = b""
        self._state = _IDLE
        self._remaining = 0
        self._chunks: ChunkedDecoder | None = None
        self._error: RemoteProtocolError | None = None
        self._method = b""
        self._upgrade = False
        self._interim = 0
        self.status = 0  # of the final response, once its head is parsed

    @property
    def awaiting_head(self) -> bool:
        """A response is expected and nothing of it has arrived."""
        return self._state == _HEAD_START and not self._buffer and not self._interim

    @property
    def idle(self) -> bool:
        return self._state == _IDLE

    def expect(self, method: bytes, upgrade: bool = False) -> None:
        """A request went out; its response may come."""
        if self._state != _IDLE:
            raise LocalProtocolError("a response is already awaited")
        self._state, self._method, self._upgrade, self._interim, self.status = (
            _HEAD_START,
            method,
            upgrade,
            0,
            0,
        )

    def passthrough(self, data: bytes) -> bool:
        """The hot path of downloads: if ``data`` lies wholly inside a Content-Length body
        (with nothing buffered), count it and say so; the caller forwards it as it is."""
        if self._state == _BODY and len(data) < self._remaining and not self._buffer:
            self._remaining -= len(data)
            return True
        return False

    def receive(self, data: bytes) -> None:
        if not data:
            return
        state = self._state
        if state == _FAILED:
            assert self._error is not None
            raise self._error
        if state in (_IDLE, _END):
            self._fail(RemoteProtocolError("the agent sent bytes when no response was due"))
        self._buffer = self._buffer + data if self._buffer else data

    def receive_eof(self) -> MessageEnd | None:
        """The agent ended the stream: the end of a body delimited by the close, None when
        between responses; a fault in the middle of one."""
        if self._state == _UNTIL_CLOSE:
            self._state = _IDLE
            return MESSAGE_END
        if self._state in (_IDLE, _TUNNEL):
            return None
        self._fail(RemoteProtocolError("the agent ended the stream within a response"))
        return None  # not reached

    def take_rest(self) -> bytes:
        """After a 101: the new protocol's first bytes."""
        if self._state != _TUNNEL:
            raise LocalProtocolError("no upgrade")
        rest, self._buffer = self._buffer, b""
        return rest

    def take_whole_body(self) -> bytes | None:
        """The hot path of small answers: right after a head whose Content-Length body is
        exactly what is buffered, that body, and the response is complete (no events for
        it); None otherwise, and nothing changes."""
        if self._state == _BODY and len(self._buffer) == self._remaining:
            data, self._buffer, self._remaining, self._state = self._buffer, b"", 0, _IDLE
            return data
        return None

    def next_event(self) -> ResponseEvent | None:
        state = self._state
        try:
            if state == _BODY:
                return self._body()
            if state == _HEAD_START:
                return self._head() if self._buffer else None
            if state == _CHUNKS:
                return self._chunked()
            if state == _UNTIL_CLOSE:
                data, self._buffer = self._buffer, b""
                return BodyData(data) if data else None
            if state == _END:
                return self._end()
            if state == _FAILED:
                assert self._error is not None
                raise self._error
            return None
        except RemoteProtocolError as error:
            self._state, self._error = _FAILED, error
            raise

    def _fail(self, error: RemoteProtocolError) -> None:
        self._state, self._error = _FAILED, error
        raise error

    def _end(self) -> MessageEnd:
        if self._buffer:  # the next response (or junk) came before its request: a fault
            raise RemoteProtocolError("the agent sent bytes after the response")
        self._state = _IDLE
        return MESSAGE_END

    def _head(self) -> ResponseHead | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n", 0, self.max_head_bytes + 4)
        if end < 0:
            if len(buffer) >= self.max_head_bytes + 4:
                raise RemoteProtocolError("the response head is too large")
            if bare_line_break(buffer):
                raise RemoteProtocolError("a line of the response head ends without CRLF")
            return None
        match = _HEAD.fullmatch(buffer, 0, end + 4)
        if match is None:
            raise RemoteProtocolError("malformed response head")
        minor, status_text, reason, block = match.groups()
        if block.count(b"\r\n") > self.max_headers:
            raise RemoteProtocolError("too many response header fields")
        status = int(status_text)
        noted: dict[bytes, list[bytes]] = {}
        headers = split_fields(block, noted)
        if b"transfer-encoding" in noted and tab_in_coding(block):
            raise RemoteProtocolError("a tab in Transfer-Encoding", 501)
        http10 = minor == b"0"
        version = b"1.0" if http10 else b"1.1"
        named = tokens(noted[b"connection"]) if b"connection" in noted else NO_TOKENS
        self._buffer = buffer[end + 4 :]
        if status < 200:
            if status == 101:
                if not self._upgrade:
                    raise RemoteProtocolError("a 101 to a request that asked for no upgrade")
                self._state, self.status = _TUNNEL, status
                return ResponseHead(status, reason or b"", version, headers, noted, TUNNEL, 0, named)
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise RemoteProtocolError("too many interim responses")
            if b"content-length" in noted or b"transfer-encoding" in noted:
                raise RemoteProtocolError("an interim response with framing fields")
            return ResponseHead(status, reason or b"", version, headers, noted, NO_BODY, 0, named)
        self.status = status
        if self._method == b"HEAD" or status in (204, 304):
            framing, length = NO_BODY, 0
            if b"content-length" in noted:  # what a GET would have had: checked, passed on
                length = content_length(noted[b"content-length"])
            if b"transfer-encoding" in noted and (status == 204 or b"content-length" in noted):
                raise RemoteProtocolError("Transfer-Encoding where no body can be")
            self._state = _END
        else:
            framing, length = body_framing(noted, http10)
            if framing == LENGTH:
                self._state, self._remaining = (_BODY, length) if length else (_END, 0)
            elif framing == CHUNKED:
                self._state, self._chunks = _CHUNKS, ChunkedDecoder()
            else:
                framing = UNTIL_CLOSE
                self._state = _UNTIL_CLOSE
        return ResponseHead(status, reason or b"", version, headers, noted, framing, length, named)

    def _body(self) -> BodyData | MessageEnd | None:
        buffer = self._buffer
        if not buffer:
            return None
        remaining = self._remaining
        if len(buffer) <= remaining:
            self._buffer = b""
            data = buffer
            remaining -= len(buffer)
        else:
            data, self._buffer = buffer[:remaining], buffer[remaining:]
            remaining = 0
        self._remaining = remaining
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
        return self._end() if decoder.done else None
