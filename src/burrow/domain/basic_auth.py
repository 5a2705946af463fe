"""HTTP basic authentication (RFC 7617) for an endpoint, keeping no cleartext password.

At bind time each credential is validated as ngrok validates it (a non-empty username
without ':', a password of 8 to 128 characters, no control characters) and kept only as
HMAC-SHA256 digests under a key drawn for this endpoint. A request's credentials are
hashed the same way and compared with every credential in constant time, so the time
taken reveals neither which username exists nor how much of a password matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import errors

PASSWORD_MIN, PASSWORD_MAX = 8, 128
REALM = "ngrok"
CHALLENGE = (b"WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in text)


def validate(username: str, password: str) -> None:
    """Raise ngrok's error for a credential it would refuse (never naming the password)."""
    if not username:
        raise errors.BASIC_AUTH_USERNAME_EMPTY()
    if ":" in username:
        raise errors.BASIC_AUTH_USERNAME_INVALID(username=username, reason="it contains ':'")
    if _has_control(username):
        raise errors.BASIC_AUTH_USERNAME_INVALID(
            username=username.encode("unicode_escape").decode(), reason="it contains a control character"
        )
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise errors.BASIC_AUTH_PASSWORD_LENGTH(min=PASSWORD_MIN, max=PASSWORD_MAX, got=len(password))
    if _has_control(password):
        raise errors.BASIC_AUTH_PASSWORD_INVALID(username=username, reason="it contains a control character")


@dataclass(frozen=True)
class BasicAuth:
    """The digests of an endpoint's credentials; build with :meth:`of`."""

    key: bytes = field(repr=False)
    digests: tuple[tuple[bytes, bytes], ...] = field(repr=False)

    @classmethod
    def of(cls, credentials: Sequence[tuple[str, str]]) -> BasicAuth:
        for username, password in credentials:
            validate(username, password)
        key = secrets.token_bytes(32)
        return cls(key, tuple((_digest(key, u), _digest(key, p)) for u, p in credentials))

    def allows(self, authorization: bytes | None) -> bool:
        """Does this ``Authorization`` field value carry one of the credentials?"""
        username, password = _parse(authorization)
        user_digest, password_digest = _digest(self.key, username), _digest(self.key, password)
        matched = False
        for expected_user, expected_password in self.digests:
            # Both compared for every credential, and combined without short-circuit.
            same_user = hmac.compare_digest(user_digest, expected_user)
            same_password = hmac.compare_digest(password_digest, expected_password)
            matched |= same_user & same_password
        return matched and username is not None


def _digest(key: bytes, text: str | None) -> bytes:
    return hmac.new(key, (text or "").encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _parse(authorization: bytes | None) -> tuple[str | None, str | None]:
    if authorization is None:
        return None, None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None, None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else (None, None)
