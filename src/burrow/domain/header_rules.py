"""Request and response header rules: remove, then add (ngrok's order), names compared
case-insensitively. An added field replaces any field of that name (so adding ``host``
rewrites the Host rather than sending two). Rules are validated at bind time so that no
rule can inject a line break (or anything else RFC 9110 forbids) into a message, and none
may touch the message framing (Content-Length, Transfer-Encoding), which the proxy owns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import errors

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §5.1 token, §5.5 field-value (visible ASCII, obs-text, inner spaces and tabs).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\x21-\x7e\x80-\xff]([\x20-\x7e\x80-\xff\t]*[\x21-\x7e\x80-\xff])?")


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


def field_name(option: str, name: object) -> bytes:
    encoded = name.strip().encode("latin-1", "replace") if isinstance(name, str) else b""
    if not _TOKEN.fullmatch(encoded):
        raise errors.ENDPOINT_OPTION_INVALID(option=option, reason=f"{name!r} is not a valid header name")
    if encoded.lower() in _FRAMING:
        raise errors.ENDPOINT_OPTION_INVALID(
            option=option, reason=f"{name!r} frames the message and cannot be changed"
        )
    return encoded


def field_value(name: bytes, value: str) -> bytes:
    try:
        encoded = value.strip(" \t").encode("latin-1")
    except UnicodeEncodeError:
        raise errors.HEADER_VALUE_INVALID(name=name.decode(), reason="it is not Latin-1 text") from None
    if not _FIELD_VALUE.fullmatch(encoded):
        reason = "it is empty" if not encoded else "it contains a control character (CR, LF, NUL, ...)"
        raise errors.HEADER_VALUE_INVALID(name=name.decode(), reason=reason)
    return encoded


@dataclass(frozen=True)
class HeaderRules:
    remove: frozenset[bytes] = frozenset()  # lower-cased names
    add: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def of(cls, option: str, add: Iterable[object], remove: Iterable[object]) -> HeaderRules:
        added = []
        for entry in add:
            if not isinstance(entry, str) or ":" not in entry:
                raise errors.ENDPOINT_OPTION_INVALID(option=option, reason="'add' entries are 'name:value'")
            name_text, _, value_text = entry.partition(":")
            name = field_name(option, name_text)
            added.append((name, field_value(name, value_text)))
        removed = {field_name(option, name).lower() for name in remove}
        removed.update(name.lower() for name, _ in added)
        return cls(frozenset(removed), tuple(added))

    def apply(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        kept = [(name, value) for name, value in headers if name.lower() not in self.remove]
        return kept + list(self.add)
