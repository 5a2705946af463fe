"""Resource ids: a type prefix and 27 base62 characters, ordered by creation time.

The 27 characters encode 20 bytes: 8 bytes of microseconds since the Unix epoch, then
12 random bytes. The alphabet is in ASCII order and the width fixed, so comparing ids
as strings compares their creation times, which is what id-keyed paging relies on.
Ids made by one process strictly increase, even within one microsecond.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
BODY_LENGTH = 27
_BASE62 = re.compile("[0-9A-Za-z]*")

API_KEY = "ak"
CREDENTIAL = "cr"
SSH_CREDENTIAL = "sshcr"
BOT_USER = "bot"
USER = "usr"
ACCOUNT = "acct"
OPERATION = "op"
TUNNEL_SESSION = "ts"
TUNNEL = "tn"
AUDIT_EVENT = "ae"
RESERVED_DOMAIN = "rd"
RESERVED_ADDR = "ra"
TLS_CERTIFICATE = "cert"
ENDPOINT = "ep"


def b62encode(value: int, width: int) -> str:
    chars = []
    while value:
        value, digit = divmod(value, 62)
        chars.append(ALPHABET[digit])
    if len(chars) > width:
        raise ValueError("value does not fit the width")
    return "".join(reversed(chars)).rjust(width, "0")


def b62decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + _INDEX[char]
    return value


def is_base62(text: str) -> bool:
    return _BASE62.fullmatch(text) is not None


# Fixed width and an ASCII-ordered alphabet: string order is numeric order.
_MAX_BODY = b62encode((1 << 160) - 1, BODY_LENGTH)


class _Clock:
    """Microsecond timestamps that never repeat or go backwards within a process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        now = time.time_ns() // 1000
        with self._lock:
            self._last = max(now, self._last + 1)
            return self._last


_clock = _Clock()


def new_id_body() -> str:
    micros = _clock.next()
    value = (micros << 96) | int.from_bytes(os.urandom(12), "big")
    return b62encode(value, BODY_LENGTH)


def new_id(prefix: str) -> str:
    return f"{prefix}_{new_id_body()}"


def is_valid_body(body: str) -> bool:
    return len(body) == BODY_LENGTH and is_base62(body) and body <= _MAX_BODY


_operation_prefix = b62encode(int.from_bytes(os.urandom(10), "big"), 14)
_operation_counter = itertools.count(1)


def new_operation_id() -> str:
    """A unique id for one API operation; cheaper than :func:`new_id`, as it is made per request."""
    return f"{OPERATION}_{_operation_prefix}{next(_operation_counter):013d}"


def split_id(value: str) -> tuple[str, str] | None:
    """``(prefix, body)`` of a well-formed id of any type, else None."""
    prefix, sep, body = value.partition("_")
    if not sep or not prefix or not prefix.isalpha() or not prefix.islower():
        return None
    if not is_valid_body(body):
        return None
    return prefix, body


def created_micros(id_value: str) -> int:
    """When an id was made, in microseconds since the epoch (from its first 8 bytes)."""
    body = id_value.rpartition("_")[2]
    return b62decode(body) >> 96
