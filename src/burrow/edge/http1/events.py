"""What the parsers hand out: a message's head, pieces of its body, its end."""

from __future__ import annotations

from .fields import UNTIL_CLOSE, Headers


class RequestHead:
    """A parsed request head. ``headers`` are as received (names' case kept, values
    without OWS); ``noted`` holds the raw values of the fields the proxy looks at."""

    __slots__ = (
        "expect_continue",
        "framing",
        "headers",
        "host",
        "keep_alive",
        "length",
        "method",
        "named",
        "noted",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: Headers,
        noted: dict[bytes, list[bytes]],
        framing: int,
        length: int,
        named: frozenset[bytes],
    ) -> None:
        self.method = method
        self.target = target
        self.version = version  # b"1.0" or b"1.1"
        self.headers = headers
        self.noted = noted
        self.framing = framing  # fields.NO_BODY, LENGTH or CHUNKED
        self.length = length  # of a LENGTH body
        self.named = named  # the Connection field's options, lower-case
        self.host = noted[b"host"][0] if b"host" in noted else b""  # (values come without OWS)
        self.keep_alive = version == b"1.1" and b"close" not in named
        self.upgrade = b"upgrade" in named and b"upgrade" in noted
        self.expect_continue = b"expect" in noted and any(
            value.lower() == b"100-continue" for value in noted[b"expect"]
        )


class ResponseHead:
    """A parsed response head (interim ones too: ``status`` < 200)."""

    __slots__ = (
        "framing",
        "headers",
        "keep_alive",
        "length",
        "named",
        "noted",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        reason: bytes,
        version: bytes,
        headers: Headers,
        noted: dict[bytes, list[bytes]],
        framing: int,
        length: int,
        named: frozenset[bytes],
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.noted = noted
        self.framing = framing  # fields.NO_BODY, LENGTH, CHUNKED, UNTIL_CLOSE or TUNNEL
        self.length = length
        self.named = named
        # Whether the peer keeps its side open after this response (RFC 9112 section 9.3).
        self.keep_alive = (
            b"close" not in named and (version == b"1.1" or b"keep-alive" in named) and framing != UNTIL_CLOSE
        )


class BodyData:
    """A piece of a message body, decoded from its transfer coding."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class MessageEnd:
    """The message is complete."""

    __slots__ = ()


MESSAGE_END = MessageEnd()
