"""One identity per database: the secret's format and fingerprint, the sealed CA key."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from burrow.store import identity
from burrow.store.database import SECRET_ENV
from burrow.store.store import Store


def test_the_environment_takes_exactly_what_secret_key_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Store.open(tmp_path / "a")
    first.close()
    held = (tmp_path / "a" / "secret.key").read_text()
    monkeypatch.setenv(SECRET_ENV, held)
    second = Store.open(tmp_path / "b", f"sqlite:///{tmp_path / 'a' / 'burrow.db'}")
    assert second.secret == first.secret == bytes.fromhex(held)
    second.close()
    assert not (tmp_path / "b" / "secret.key").exists()


@pytest.mark.parametrize("value", ["a raw passphrase", "ab" * 31, "ab" * 33, "zz" * 32, ""])
def test_other_secret_formats_are_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(SECRET_ENV, value)
    with pytest.raises(identity.IdentityError, match="must be 64 hexadecimal digits"):
        Store.open(tmp_path)


def test_a_database_refuses_a_secret_other_than_its_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store.open(tmp_path / "a", url).close()
    stored = Store.open(tmp_path / "a", url)  # the same secret: accepted again
    with stored.engine.connect() as connection:
        rows = connection.execute(identity.schema.cluster_identity.select()).all()
    assert [row.name for row in rows] == [identity.FINGERPRINT]
    assert rows[0].value == identity.fingerprint(stored.secret) and stored.secret.hex() not in rows[0].value
    stored.close()
    monkeypatch.setenv(SECRET_ENV, secrets.token_hex(32))
    with pytest.raises(
        identity.IdentityError, match="differs from the one this database was first used with"
    ):
        Store.open(tmp_path / "b", url)


def test_sealed_values_open_only_under_the_same_secret_and_name() -> None:
    secret = secrets.token_bytes(32)
    sealed = identity.seal(secret, "ca_key_sealed", b"private key")
    assert b"private key" not in sealed.encode()
    assert identity.unseal(secret, "ca_key_sealed", sealed) == b"private key"
    with pytest.raises(identity.IdentityError):
        identity.unseal(secrets.token_bytes(32), "ca_key_sealed", sealed)
    with pytest.raises(identity.IdentityError):
        identity.unseal(secret, "another_name", sealed)
