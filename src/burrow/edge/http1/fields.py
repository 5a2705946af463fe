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
NOTED = HOP_BY_HOP | {
    b"content-length",
    b"host",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"accept-encoding",
}
NO_TOKENS: frozenset[bytes] = frozenset()


def _spellings(names: frozenset[bytes] | tuple[bytes, ...]) -> dict[bytes, bytes]:
    """Common spellings (lower case, Title-Case, TE's upper case) of lower-case names."""
    spelled = {name: name for name in names}
    spelled |= {b"-".join(part.capitalize() for part in name.split(b"-")): name for name in names}
    spelled |= {name.upper(): name for name in names if len(name) <= 2}
    return spelled


# The hot path of splitting: names as commonly spelled need no lower() to be noted or
# passed over. Any other spelling is lowered (field names are case-insensitive).
_NOTED_SPELLINGS = _spellings(NOTED)
_UNNOTED_SPELLINGS = frozenset(
    _spellings(
        (
            b"accept",
            b"accept-language",
            b"authorization",
            b"cache-control",
            b"content-type",
            b"cookie",
            b"date",
            b"etag",
            b"last-modified",
            b"location",
            b"origin",
            b"referer",
            b"server",
            b"set-cookie",
            b"user-agent",
            b"vary",
        )
    )
)
assert not {name.lower() for name in _UNNOTED_SPELLINGS} & NOTED
assert all(spelling.lower() == name for spelling, name in _NOTED_SPELLINGS.items())
# Common spellings of Content-Length, and of other names: told apart without lower().
CONTENT_LENGTH_SPELLINGS = frozenset(s for s, name in _NOTED_SPELLINGS.items() if name == b"content-length")
NOT_CONTENT_LENGTH = _UNNOTED_SPELLINGS | (_NOTED_SPELLINGS.keys() - CONTENT_LENGTH_SPELLINGS)

NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE, TUNNEL = range(5)  # how a message's body is framed
MAX_LENGTH_DIGITS = 18  # a Content-Length that fits in 63 bits
# A Content-Length value (OWS around it allowed): 1*DIGIT, no leading zero but in "0",
# at most MAX_LENGTH_DIGITS digits.
_LENGTH_VALUE = re.compile(rb"[ \t]*+(0|[1-9][0-9]{0,%d})[ \t]*+" % (MAX_LENGTH_DIGITS - 1))


def split_fields(block: bytes, noted: dict[bytes, list[bytes]]) -> Headers:
    """The (name, value) pairs of validated field lines, values without their OWS. The
    fields named in :data:`NOTED` also go to ``noted`` by lower-case name."""
    headers: Headers = _FIELD.findall(block)
    for name, value in headers:
        if name in _UNNOTED_SPELLINGS:
            continue
        lower = _NOTED_SPELLINGS[name] if name in _NOTED_SPELLINGS else name.lower()
        if lower in NOTED:
            if lower in noted:
                noted[lower].append(value)
            else:
                noted[lower] = [value]
    return headers


def tokens(values: list[bytes] | None) -> frozenset[bytes]:
    """The lower-case elements of comma-separated list fields (``Connection``)."""
    if not values:
        return NO_TOKENS
    return frozenset(
        item.strip(_OWS).lower() for value in values for item in value.split(b",") if item.strip(_OWS)
    )


def content_length(values: list[bytes]) -> int:
    """The one Content-Length: 1*DIGIT in one field line. Lists (``5, 5``), repeated lines
    and multi-digit values with leading zeros are refused: parsers differ on each."""
    if len(values) != 1:
        raise RemoteProtocolError("more than one Content-Length")
    match = _LENGTH_VALUE.fullmatch(values[0])
    if match is None:
        raise RemoteProtocolError("bad Content-Length")
    return int(match[1])


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
    if b"transfer-encoding" in noted:
        if b"content-length" in noted:
            raise RemoteProtocolError("both Transfer-Encoding and Content-Length")
        transfer_coding(noted[b"transfer-encoding"], http10)
        return CHUNKED, 0
    if b"content-length" in noted:
        return LENGTH, content_length(noted[b"content-length"])
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
