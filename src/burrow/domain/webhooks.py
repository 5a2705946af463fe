"""Webhook signature verification for the providers whose schemes are public and need
nothing but the headers and the raw body.

- github: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``
- slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:" + body)>`` with
  ``X-Slack-Request-Timestamp: <ts>`` no more than 5 minutes from now
- stripe: ``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>." + body)>[,v1=...]``,
  ``t`` no more than 5 minutes from now (any v1 may match: Stripe sends several while
  secrets roll)
- shopify: ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256(secret, body)>``

The secret is kept only as an HMAC key; every comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TOLERANCE_SECONDS = 300
# The body is buffered whole before it is checked; larger bodies are refused (413).
MAX_BODY = 10 * 1024 * 1024

Headers = Sequence[tuple[bytes, bytes]]


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first field ``name`` (compared case-insensitively), or None."""
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value.strip()
    return None


def _mac(secret: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _hex(value: bytes) -> bytes | None:
    try:
        return bytes.fromhex(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def _fresh(timestamp: bytes, now: float) -> bool:
    return timestamp.isdigit() and abs(now - int(timestamp)) <= TOLERANCE_SECONDS


def _github(secret: bytes, headers: Headers, body: bytes, now: float) -> bool:
    signature = header(headers, b"x-hub-signature-256") or b""
    scheme, _, given = signature.partition(b"=")
    digest = _hex(given)
    return scheme == b"sha256" and digest is not None and hmac.compare_digest(digest, _mac(secret, body))


def _slack(secret: bytes, headers: Headers, body: bytes, now: float) -> bool:
    signature = header(headers, b"x-slack-signature") or b""
    timestamp = header(headers, b"x-slack-request-timestamp") or b""
    scheme, _, given = signature.partition(b"=")
    digest = _hex(given)
    if scheme != b"v0" or digest is None or not _fresh(timestamp, now):
        return False
    return hmac.compare_digest(digest, _mac(secret, b"v0:", timestamp, b":", body))


def _stripe(secret: bytes, headers: Headers, body: bytes, now: float) -> bool:
    signature = header(headers, b"stripe-signature") or b""
    fields = [part.strip().partition(b"=") for part in signature.split(b",")]
    timestamps = [value for key, _, value in fields if key == b"t"]
    if len(timestamps) != 1 or not _fresh(timestamps[0], now):
        return False
    expected = _mac(secret, timestamps[0], b".", body)
    matched = False
    for key, _, value in fields:
        digest = _hex(value) if key == b"v1" else None
        # No early exit: every candidate is compared.
        matched |= digest is not None and hmac.compare_digest(digest, expected)
    return matched


def _shopify(secret: bytes, headers: Headers, body: bytes, now: float) -> bool:
    given = header(headers, b"x-shopify-hmac-sha256") or b""
    try:
        digest = base64.b64decode(given, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(digest, _mac(secret, body))


_Check = Callable[[bytes, Headers, bytes, float], bool]
PROVIDERS: dict[str, _Check] = {
    "github": _github,
    "slack": _slack,
    "stripe": _stripe,
    "shopify": _shopify,
}


@dataclass(frozen=True)
class WebhookVerifier:
    provider: str
    secret: bytes

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookVerifier(provider={self.provider!r})"

    def verify(self, headers: Headers, body: bytes, now: float) -> bool:
        """Is this request signed with the secret? ``now`` is wall-clock (Unix) time."""
        return PROVIDERS[self.provider](self.secret, headers, body, now)
