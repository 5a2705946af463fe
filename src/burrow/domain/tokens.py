"""Secret tokens for API keys and tunnel credentials.

A token is ``<id body>_<secret>``: the 27-character body of the resource id it belongs
to, then 22 base62 characters of 128 random bits and a 6-character checksum. The
checksum (CRC-32 over the id prefix, body and random part) lets a mistyped, truncated
or made-up token be refused without a database read, and tells an API key from an
authtoken. Only a keyed hash of a token is stored: HMAC-SHA256 with the server secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from enum import Enum

from burrow.domain import ids

_RANDOM_LENGTH = 22
_CHECKSUM_LENGTH = 6
SECRET_LENGTH = _RANDOM_LENGTH + _CHECKSUM_LENGTH
TOKEN_LENGTH = ids.BODY_LENGTH + 1 + SECRET_LENGTH


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str


class TokenProblem(Enum):
    MALFORMED = "malformed"
    OTHER_KIND = "other_kind"  # a well-formed token of another resource type
    ID_NOT_TOKEN = "id_not_token"  # the resource id itself was given


def _checksum(prefix: str, body: str, random_part: str) -> str:
    crc = zlib.crc32(f"{prefix}_{body}_{random_part}".encode("ascii"))
    return ids.b62encode(crc, _CHECKSUM_LENGTH)


def issue(prefix: str) -> IssuedToken:
    """A new resource id with its token."""
    body = ids.new_id_body()
    random_part = ids.b62encode(secrets.randbits(128), _RANDOM_LENGTH)
    token = f"{body}_{random_part}{_checksum(prefix, body, random_part)}"
    return IssuedToken(id=f"{prefix}_{body}", token=token)


def resource_id(token: str, prefix: str, other_prefixes: tuple[str, ...] = ()) -> str | TokenProblem:
    """The id a token of type ``prefix`` belongs to, or why it cannot be one."""
    if len(token) != TOKEN_LENGTH or token[ids.BODY_LENGTH] != "_":
        if ids.split_id(token) is not None:
            return TokenProblem.ID_NOT_TOKEN
        return TokenProblem.MALFORMED
    body, secret = token[: ids.BODY_LENGTH], token[ids.BODY_LENGTH + 1 :]
    if not ids.is_valid_body(body) or not ids.is_base62(secret):
        return TokenProblem.MALFORMED
    random_part, checksum = secret[:_RANDOM_LENGTH], secret[_RANDOM_LENGTH:]
    if hmac.compare_digest(checksum, _checksum(prefix, body, random_part)):
        return f"{prefix}_{body}"
    for other in other_prefixes:
        if checksum == _checksum(other, body, random_part):
            return TokenProblem.OTHER_KIND
    return TokenProblem.MALFORMED


def digest(key: bytes, token: str) -> str:
    """The keyed hash stored in place of a token."""
    return hmac.new(key, token.encode("ascii"), hashlib.sha256).hexdigest()


def matches(key: bytes, token: str, stored_digest: str) -> bool:
    """Whether ``token`` is the one whose digest was stored, in constant time."""
    return hmac.compare_digest(digest(key, token), stored_digest)
