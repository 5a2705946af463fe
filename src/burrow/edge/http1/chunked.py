"""The chunked transfer coding, decoded strictly (RFC 9112 section 7.1).

chunk-size is 1 to 16 hex digits, extensions are well-formed and the size line bounded,
every line ends with CRLF (nothing else), the data is followed by CRLF, and the trailer
section is bounded in size and dropped (the proxy re-frames bodies, so trailers never
reach the other side).
"""

from __future__ import annotations

import re

from .errors import RemoteProtocolError
from .fields import FIELD_LINES, TOKEN, bare_line_break

MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 16 * 1024
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_SIZE_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*\r\n"
)
_TRAILERS = re.compile(FIELD_LINES + rb"\r\n")
_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Feeds on a buffer, returning how much of it the body used and the data in it."""

    __slots__ = ("_remaining", "_state", "done")

    def __init__(self) -> None:
        self._state = _SIZE
        self._remaining = 0
        self.done = False

    def feed(self, buffer: bytes, pieces: list[bytes]) -> int:
        """Decode from ``buffer``; the data goes to ``pieces``. Returns the bytes used (the
        rest waits for more, or follows the body once :attr:`done`)."""
        at = 0
        end = len(buffer)
        while at < end and not self.done:
            state = self._state
            if state == _DATA:
                n = min(self._remaining, end - at)
                pieces.append(buffer[at : at + n] if n < end or at else buffer)
                at += n
                self._remaining -= n
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END and end - at < 2:
                if buffer[at : at + 1] != b"\r":
                    raise RemoteProtocolError("no CRLF after chunk data")
                return at
            elif state == _DATA_END:
                if buffer[at : at + 2] != b"\r\n":
                    raise RemoteProtocolError("no CRLF after chunk data")
                at += 2
                self._state = _SIZE
            elif state == _SIZE:
                newline = buffer.find(b"\n", at, at + MAX_CHUNK_LINE)
                if newline < 0:
                    if end - at >= MAX_CHUNK_LINE:
                        raise RemoteProtocolError("chunk size line too long")
                    return at
                match = _SIZE_LINE.fullmatch(buffer, at, newline + 1)
                if match is None:
                    raise RemoteProtocolError("bad chunk size line")
                at = newline + 1
                self._remaining = int(match.group(1), 16)
                self._state = _DATA if self._remaining else _TRAILER
            elif buffer.startswith(b"\r\n", at):  # the trailer section: empty
                at += 2
                self._state = _DONE
                self.done = True
            elif end - at < 2 and buffer[at : at + 1] == b"\r":
                return at
            else:  # field lines, then an empty line
                stop = buffer.find(b"\r\n\r\n", at, at + MAX_TRAILERS)
                if stop < 0:
                    if end - at >= MAX_TRAILERS or bare_line_break(buffer[at:end]):
                        raise RemoteProtocolError("bad or oversized trailer section")
                    return at
                if _TRAILERS.fullmatch(buffer, at, stop + 4) is None:
                    raise RemoteProtocolError("bad trailer section")
                at = stop + 4
                self._state = _DONE
                self.done = True
        return at
