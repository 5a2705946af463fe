"""The dashboard's session cookie and CSRF checks.

The cookie holds the signed-in API key, sealed with AES-GCM under a key derived from the
server secret: the browser cannot read or alter it, and any node with the same secret can
open it, so sessions need no server-side state. A session is a JSON payload:
``key`` (the API key, or None before sign-in), ``csrf`` (the token forms must carry),
``issued`` and ``seen`` (Unix seconds, for absolute and idle expiry) and ``flash``
(a one-time message, possibly holding a just-created token, shown on the next page).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COOKIE_NAME = "burrow_dashboard"
# Over HTTPS: a __Host- cookie is only ever set by this very host (Secure, Path=/, no
# Domain), so no page on a sibling or parent domain can plant one the dashboard reads.
SECURE_COOKIE_NAME = "__Host-burrow_dashboard"
IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60
MAX_COOKIE_BYTES = 3800  # browsers drop cookies over 4096 bytes
_NONCE_BYTES = 12
# Binds the ciphertext to its purpose: a value sealed for anything else never opens here.
_ASSOCIATED_DATA = b"burrow dashboard session v1"


@dataclass(frozen=True)
class Session:
    csrf: str
    issued: int
    seen: int
    key: str | None = None
    flash: dict[str, Any] | None = field(default=None)

    @classmethod
    def new(cls, now: int, key: str | None = None) -> Session:
        return cls(csrf=secrets.token_urlsafe(32), issued=now, seen=now, key=key)

    def touched(self, now: int) -> Session:
        return replace(self, seen=now)


class SessionCodec:
    """Seals sessions into cookie values and opens them, enforcing idle and absolute expiry."""

    def __init__(
        self, server_secret: bytes, idle: int = IDLE_SECONDS, absolute: int = ABSOLUTE_SECONDS
    ) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"burrow dashboard cookie key"
        ).derive(server_secret)
        self._aead = AESGCM(derived)
        self.idle = idle
        self.absolute = absolute

    def seal(self, session: Session) -> str:
        payload = {
            "key": session.key,
            "csrf": session.csrf,
            "issued": session.issued,
            "seen": session.seen,
            "flash": session.flash,
        }
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(payload).encode(), _ASSOCIATED_DATA)
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None, now: int) -> Session | None:
        """The session in ``value``, or None when it is missing, forged, altered or expired."""
        if not value or len(value) > MAX_COOKIE_BYTES:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _ASSOCIATED_DATA)
            data = json.loads(plain)
            session = Session(
                csrf=str(data["csrf"]),
                issued=int(data["issued"]),
                seen=int(data["seen"]),
                key=data["key"] if isinstance(data["key"], str) else None,
                flash=data["flash"] if isinstance(data["flash"], dict) else None,
            )
        except (ValueError, binascii.Error, InvalidTag, KeyError, TypeError):
            return None
        if now - session.seen > self.idle or now - session.issued > self.absolute or session.seen > now + 60:
            return None
        return session


def now() -> int:
    return int(time.time())


def csrf_matches(session: Session, submitted: object) -> bool:
    return isinstance(submitted, str) and hmac.compare_digest(session.csrf.encode(), submitted.encode())


def same_origin(headers: dict[str, str], own_origins: set[str]) -> bool:
    """Whether a POST comes from one of our own pages: Origin, or else Referer, must name us.

    A request with neither is refused: every browser that runs our forms sends one of them.
    """
    origin = headers.get("origin")
    if origin is not None:
        return origin.lower() in own_origins
    referer = headers.get("referer")
    if not referer:
        return False
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}".lower() in own_origins
