"""Raw HTTP/1.1 clients for the cross-tenant tests: one socket, two response parsers.

``strict``: CRLF line ends only, no obs-fold, no NUL or other controls in fields, a valid
status line, at most one Content-Length, Transfer-Encoding only ``chunked`` and never with
Content-Length, no 101 unasked (Go's net/http on framing, stricter on line ends).
``lenient``: what curl or an old proxy accepts: LF ends a line (a CR before it dropped),
continuation lines joined, the first Content-Length wins, exactly that many bytes read.
The lenient one keeps whatever follows a response for the next one, which is how a
response smuggled in by an agent becomes another tenant's response.

A response is one of :class:`Response`, :class:`Malformed` (the parser refused it),
:class:`Closed` (the connection ended before a response began: ``raw`` empty), or
:class:`Truncated` (a head the parser took, then the connection ended mid-body).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

TIMEOUT = 3.0
MAX_HEAD = 64 * 1024


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes  # the bytes this response was parsed from, interim responses included
    interim: list[int] = field(default_factory=list)

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def closes(self) -> bool:
        return any(b"close" in value.lower() for value in self.values(b"connection"))


@dataclass
class Malformed:
    reason: str
    raw: bytes


@dataclass
class Closed:
    raw: bytes


@dataclass
class Truncated:
    status: int
    raw: bytes


@dataclass
class TimedOut:
    raw: bytes


Outcome = Response | Malformed | Closed | Truncated | TimedOut


class _Fault(Exception):
    pass


class _Eof(Exception):
    pass


class RawClient:
    """One TCP connection to the public listener, with a receive buffer kept across responses."""

    def __init__(self, addr: str, timeout: float = TIMEOUT) -> None:
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = bytearray()
        self.received = bytearray()  # everything ever received
        self.eof = False
        self._mark = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """False if the connection is gone (the request was not delivered)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def _fill(self) -> None:
        if self.eof:
            raise _Eof
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise _Eof
        self.buffer += chunk
        self.received += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _line(self, strict: bool) -> bytes:
        """One line without its end: CRLF (strict) or LF with an optional CR before it."""
        while (at := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise _Fault("line too long")
            self._fill()
        line = bytes(self.buffer[:at])
        del self.buffer[: at + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        elif strict:
            raise _Fault("bare LF")
        if strict and (b"\r" in line):
            raise _Fault("bare CR")
        return line

    def _until_close(self) -> bytes:
        try:
            while True:
                self._fill()
        except _Eof:
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_response(self, method: bytes, strict: bool) -> Outcome:
        """The next final response (interim ones gathered), as the chosen parser sees it."""
        self._mark = len(self.received) - len(self.buffer)
        status = 0
        try:
            interim: list[int] = []
            while True:
                status, headers = self._head(strict)
                if 100 <= status < 200 and status != 101:
                    interim.append(status)
                    continue
                break
            if status == 101:
                if strict:
                    raise _Fault("101 to a request that asked for no upgrade")
                return Response(status, headers, self._until_close(), self._raw(), interim)
            body = self._body(method, status, headers, strict)
            return Response(status, headers, body, self._raw(), interim)
        except _Fault as fault:
            return Malformed(str(fault), self._raw() + bytes(self.buffer))
        except _Eof:
            raw = self._raw()
            return Truncated(status, raw) if status else Closed(raw)
        except TimeoutError:
            return TimedOut(self._raw())

    def _raw(self) -> bytes:
        return bytes(self.received[self._mark : len(self.received) - len(self.buffer)])

    def _head(self, strict: bool) -> tuple[int, list[tuple[bytes, bytes]]]:
        start = len(self.received) - len(self.buffer)
        status_line = self._line(strict)
        match = re.fullmatch(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?", status_line, re.DOTALL)
        if match is None or (strict and not re.fullmatch(rb"[1-5][0-9]{2}", match.group(1))):
            raise _Fault(f"bad status line {status_line[:40]!r}")
        if strict and match.group(2) and re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", match.group(2)):
            raise _Fault("control character in the reason")
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self._line(strict)
            if len(self.received) - len(self.buffer) - start > MAX_HEAD:
                raise _Fault("head too large")
            if not line:
                return int(match.group(1)), headers
            if line[:1] in (b" ", b"\t"):
                if strict or not headers:
                    raise _Fault("obs-fold")
                name, value = headers[-1]
                headers[-1] = (name, value + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if strict:
                if not colon or not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
                    raise _Fault(f"bad field line {line[:40]!r}")
                if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
                    raise _Fault(f"control character in field {name!r}")
            elif not colon:
                continue
            headers.append((name.strip(), value.strip(b" \t")))

    def _body(self, method: bytes, status: int, headers: list[tuple[bytes, bytes]], strict: bool) -> bytes:
        if method == b"HEAD" or status in (204, 304):
            return b""
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        codings = [v for k, v in headers if k.lower() == b"transfer-encoding"]
        if strict:
            if codings:
                if lengths:
                    raise _Fault("Transfer-Encoding with Content-Length")
                if len(codings) != 1 or codings[0].lower() != b"chunked":
                    raise _Fault(f"transfer coding {codings!r}")
                return self._chunked(strict)
            if lengths:
                if len(lengths) != 1 or not lengths[0].isdigit():
                    raise _Fault(f"Content-Length {lengths!r}")
                return self._take(int(lengths[0]))
            return self._until_close()
        if codings and b"chunked" in codings[-1].lower():
            return self._chunked(strict)
        if lengths:
            digits = re.match(rb"\d+", lengths[0])
            return self._take(int(digits.group(0)) if digits else 0)
        return self._until_close()

    def _chunked(self, strict: bool) -> bytes:
        body = bytearray()
        while True:
            line = self._line(strict)
            size_text = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size_text):
                if strict:
                    raise _Fault(f"bad chunk size {line[:20]!r}")
                size_text = re.match(rb"[0-9a-fA-F]*", size_text).group(0) or b"0"  # type: ignore[union-attr]
            size = int(size_text, 16)
            if size == 0:
                while self._line(strict):
                    pass  # trailers
                return bytes(body)
            body += self._take(size)
            after = self._line(strict)
            if strict and after:
                raise _Fault("no CRLF after chunk data")
