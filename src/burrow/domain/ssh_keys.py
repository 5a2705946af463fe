"""SSH public keys as /ssh_credentials holds them: parsed strictly, kept in one form.

A key is given as an ``authorized_keys`` line (``<type> <base64> [comment]``). It is
parsed with ``cryptography`` (the blob must decode to the key its type names), and only
key types OpenSSH still trusts by default are accepted: Ed25519, ECDSA on NIST curves,
RSA of 2048 bits or more. What is stored is ``<type> <base64>`` (the comment dropped,
since it says nothing about the key) and its SHA-256 fingerprint, written as OpenSSH
writes it (``SHA256:`` and unpadded base64), which is what the gateway looks keys up by.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from burrow.domain import errors

MAX_KEY_BYTES = 16 * 1024
MIN_RSA_BITS = 2048
_TYPES = frozenset(
    {"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"}
)


@dataclass(frozen=True, slots=True)
class PublicKey:
    text: str  # "<type> <base64>"
    fingerprint: str  # "SHA256:..." of the key blob


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA-256 fingerprint of a key blob (the wire form of the public key)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse(text: str) -> PublicKey:
    """The key ``text`` holds, or ERR_NGROK_90460 saying why it is not one."""

    def invalid(reason: str) -> errors.BurrowError:
        return errors.SSH_PUBLIC_KEY_INVALID(reason=reason)

    if len(text.encode("utf-8", "replace")) > MAX_KEY_BYTES:
        raise invalid(f"longer than {MAX_KEY_BYTES} bytes")
    stripped = text.strip()
    if "\n" in stripped or "\r" in stripped:
        raise invalid("more than one line: give one key")
    parts = stripped.split()
    if len(parts) < 2:
        raise invalid("expected '<type> <base64 key> [comment]', as in an authorized_keys line")
    kind, encoded = parts[0], parts[1]
    if kind not in _TYPES:
        raise invalid(f"key type {kind[:40]!r} is not accepted (use ssh-ed25519, ecdsa-sha2-nistp*, ssh-rsa)")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("the key is not valid base64") from None
    try:
        key = serialization.load_ssh_public_key(f"{kind} {encoded}".encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise invalid(f"the key data is not a valid {kind} key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise invalid(f"an RSA key of {key.key_size} bits is too weak (at least {MIN_RSA_BITS})")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise invalid(f"key type {kind!r} is not accepted")
    return PublicKey(f"{kind} {encoded}", fingerprint(blob))
