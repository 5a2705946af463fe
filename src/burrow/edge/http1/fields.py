"""Field lines and message framing shared by requests and responses (RFC 9112 sections 5, 6).

Strict on purpose: llhttp's leniencies (bare LF, obs-fold, lists of lengths, codings
before ``chunked``) are where a proxy and the server behind it disagree about where a
message ends. A head is validated whole by one regular expression, then split.
"""

from __future__ import annotations

import re

from .errors import RemoteProtocolError

Headers = list[tuple[bytes, bytes]]

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# field-name ":" OWS field-value OWS CRLF; a value is VCHAR, obs-text, SP and HTAB only
# (so no NUL, CR, LF or other control), and a line starting with whitespace (obs-fold)
# is no field line.
FIELD_LINES = rb"(?:" + TOKEN + rb"+:[\t\x20-\x7e\x80-\xff]*+\r\n)*+"  # possessive: no backtracking
_TOKEN = re.compile(TOKEN)
_FIELD = re.compile(rb"(" + TOKEN + rb"):[ \t]*+((?:[^\r]*[^\r \t])?)[ \t]*\r\n")  # validated lines only
_TAB_IN_CODING = re.compile(rb"(?i)(?:^|\n)transfer-encoding:[^\r]*\t")
_OWS = b" \t"

HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Fields the parsers note by lower-case name while splitting (the rest are only kept).
NOTED = HOP_BY_HOP | {b"content-length", b"host", b"expect", b"x-forwarded-for", b"accept-encoding"}

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE, TUNNEL = range(5)  # how a message's body is framed
MAX_LENGTH_DIGITS = 18  # a Content-Length that fits in 63 bits


def split_fields(block: bytes, noted: dict[bytes, list[bytes]]) -> Headers:
    """The (name, value) pairs of validated field lines, values without their OWS. The
    fields named in :data:`NOTED` also go to ``noted`` by lower-case name."""
    headers: Headers = _FIELD.findall(block)
    for name, value in headers:
        lower = name.lower()
        if lower in NOTED:
            noted.setdefault(lower, []).append(value)
    return headers


def tokens(values: list[bytes] | None) -> frozenset[bytes]:
    """The lower-case elements of comma-separated list fields (``Connection``)."""
    if not values:
        return frozenset()
    return frozenset(
        item.strip(_OWS).lower() for value in values for item in value.split(b",") if item.strip(_OWS)
    )


def content_length(values: list[bytes]) -> int:
    """The one Content-Length: 1*DIGIT in one field line. Lists (``5, 5``), repeated lines
    and multi-digit values with leading zeros are refused: parsers differ on each."""
    if len(values) != 1:
        raise RemoteProtocolError("more than one Content-Length")
    value = values[0].strip(_OWS)
    if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS or (len(value) > 1 and value[:1] == b"0"):
        raise RemoteProtocolError("bad Content-Length")
    return int(value)


def tab_in_coding(block: bytes) -> bool:
    """Whether a Transfer-Encoding field line holds an HTAB, even as OWS (refused)."""
    return _TAB_IN_CODING.search(block) is not None


def transfer_coding(values: list[bytes], http10: bool) -> None:
    """Transfer-Encoding must be exactly ``chunked``, alone, in one field line: every other
    coding (``identity, chunked``, ``gzip, chunked``), and any HTAB in the value, is refused."""
    if http10:
        raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 message")
    if len(values) != 1 or b"\t" in values[0]:  # (the caller checks the OWS too: tab_in_coding)
        raise RemoteProtocolError("unsupported Transfer-Encoding", 501)
    value = values[0].strip(b" ")
    if value.lower() != b"chunked":
        raise RemoteProtocolError(
            "unsupported Transfer-Encoding", 400 if not _TOKEN.fullmatch(value) else 501
        )


def body_framing(noted: dict[bytes, list[bytes]], http10: bool) -> tuple[int, int]:
    """(framing, length) from Transfer-Encoding and Content-Length (RFC 9112 section 6);
    NO_BODY when neither is there (the caller decides what that means for a response)."""
    lengths = noted.get(b"content-length")
    coding = noted.get(b"transfer-encoding")
    if coding is not None:
        if lengths is not None:
            raise RemoteProtocolError("both Transfer-Encoding and Content-Length")
        transfer_coding(coding, http10)
        return CHUNKED, 0
    if lengths is not None:
        return LENGTH, content_length(lengths)
    return NO_BODY, 0


def end_to_end(headers: Headers, named: frozenset[bytes], keep: frozenset[bytes] = frozenset()) -> Headers:
    """``headers`` without hop-by-hop fields, those the Connection field names, and the
    framing (Content-Length), which the serialiser writes itself; ``keep`` stays."""
    return [
        (name, value)
        for name, value in headers
        if (lower := name.lower()) in keep
        or not (lower in HOP_BY_HOP or lower == b"content-length" or (named and lower in named))
    ]


def bare_line_break(buffer: bytes | bytearray) -> bool:
    """Whether an unfinished head already holds a LF without its CR (refused at once,
    rather than after waiting for a CRLF CRLF that may never come)."""
    return buffer.count(b"\n") != buffer.count(b"\r\n")
