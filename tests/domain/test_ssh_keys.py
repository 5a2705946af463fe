"""SSH public keys: parsed strictly, stored in one form, fingerprinted as OpenSSH does."""

from __future__ import annotations

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from burrow.domain import errors, ssh_keys


def _public(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP521R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ed25519", "p256", "p521", "rsa2048"],
)
def test_accepted_keys_and_their_fingerprints(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> None:
    text = _public(key)
    parsed = ssh_keys.parse(f"  {text} someone@laptop \n")
    assert parsed.text == text
    # The same fingerprint OpenSSH (and asyncssh, which the gateway reads keys with) shows.
    assert parsed.fingerprint == asyncssh.import_public_key(text).get_fingerprint("sha256")


def test_a_key_over_the_size_cap_is_refused() -> None:
    with pytest.raises(errors.BurrowError) as refused:
        ssh_keys.parse("ssh-ed25519 " + "A" * ssh_keys.MAX_KEY_BYTES)
    assert refused.value.code == errors.SSH_PUBLIC_KEY_INVALID.code
