"""One identity for every node on a database: the same secret, the same agent CA.

The first node to open a database writes a keyed fingerprint of its secret (an HMAC of a
constant under the secret, which reveals nothing of it); a node whose secret gives another
fingerprint refuses to start, since none of the tokens would authenticate there. The
agent CA's private key is stored encrypted under the secret (AES-GCM, its key derived
from the secret with HKDF), so the database alone never holds a usable CA key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine, exc, insert, select

from burrow.store import schema

FINGERPRINT = "secret_fingerprint"
CA_CERT = "ca_cert"
CA_KEY_SEALED = "ca_key_sealed"
_FINGERPRINT_CONSTANT = b"burrow cluster secret fingerprint v1"
_SEAL_INFO = b"burrow cluster seal v1"


class IdentityError(Exception):
    """This node cannot join the cluster as configured; the message says why and what to do."""


def fingerprint(secret: bytes) -> str:
    return hmac.new(secret, _FINGERPRINT_CONSTANT, hashlib.sha256).hexdigest()


def _sealing_key(secret: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(secret)
    return AESGCM(key)


def seal(secret: bytes, name: str, plaintext: bytes) -> str:
    """``plaintext`` encrypted under the secret, bound to ``name`` (so values cannot be swapped)."""
    nonce = os.urandom(12)
    sealed = nonce + _sealing_key(secret).encrypt(nonce, plaintext, name.encode())
    return base64.b64encode(sealed).decode()


def unseal(secret: bytes, name: str, sealed: str) -> bytes:
    raw = base64.b64decode(sealed)
    try:
        return _sealing_key(secret).decrypt(raw[:12], raw[12:], name.encode())
    except InvalidTag:
        raise IdentityError(f"the cluster's {name} cannot be decrypted with this node's secret key") from None


def get(engine: Engine, name: str) -> str | None:
    table = schema.cluster_identity
    with engine.connect() as connection:
        value = connection.execute(select(table.c.value).where(table.c.name == name)).scalar()
    return None if value is None else str(value)


def put_once(engine: Engine, values: dict[str, str]) -> dict[str, str]:
    """Write ``values`` unless another node wrote them first; what the database holds after."""
    table = schema.cluster_identity
    try:
        with engine.begin() as connection:
            connection.execute(insert(table), [{"name": k, "value": v} for k, v in values.items()])
    except exc.IntegrityError:
        pass  # another node won the race: use what it wrote
    held = {name: get(engine, name) for name in values}
    return {name: value for name, value in held.items() if value is not None}


def check_secret(engine: Engine, secret: bytes) -> None:
    """Record this secret's fingerprint as the cluster's, or refuse a secret that differs."""
    mine = fingerprint(secret)
    theirs = put_once(engine, {FINGERPRINT: mine}).get(FINGERPRINT)
    if theirs is not None and not hmac.compare_digest(theirs, mine):
        raise IdentityError(
            "this node's secret key differs from the one this database was first used with, so no "
            "token would authenticate here: set BURROW_SECRET_KEY to the cluster's key (the hex in "
            "the first node's secret.key), or use that secret.key file"
        )
