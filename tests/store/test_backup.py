"""Backups (``burrow admin backup``/``restore``) and upgrades: old tokens authenticate in a
restored data directory; a schema from a newer Burrow is refused, changing nothing."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select, text
from typer.testing import CliRunner

from burrow.cli.main import app
from burrow.domain import tokens
from burrow.edge.certs import ensure_server_certificate
from burrow.store import backup, database
from burrow.store.store import Store
from tests.harness import snapshot


def filled(data_dir: Path, database_url: str | None = None) -> tuple[str, str, str]:
    """A store with an account, a credential and a reserved domain; (api key, credential id, its token)."""
    store = Store.open(data_dir, database_url)
    try:
        user, api_key = store.create_account("ops@example.com")
        credential, token = store.create_credential(
            user.account_id, user.id, "agent", "", ["bind:*.example.com"]
        )
        ensure_server_certificate(data_dir)  # the agent CA, as the edge makes it
    finally:
        store.close()
    return api_key, credential.id, token


def rows(data_dir: Path, database_url: str | None = None) -> dict[str, list[tuple[object, ...]]]:
    store = Store.open(data_dir, database_url)
    try:
        tables = MetaData()
        tables.reflect(store.engine)
        with store.engine.connect() as connection:
            return {
                name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
                for name, table in tables.tables.items()
                if backup._kept(name)
            }
    finally:
        store.close()


def authenticates(
    data_dir: Path, api_key: str, credential_id: str, token: str, url: str | None = None
) -> bool:
    store = Store.open(data_dir, url)
    try:
        key_id = tokens.resource_id(api_key, "ak")
        assert isinstance(key_id, str)
        record = store.auth_record("credential", credential_id)
        return (
            store.authenticate_api_key(key_id, api_key) is not None
            and record is not None
            and tokens.matches(store.secret, token, record.digest)
        )
    finally:
        store.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_restored_data_directory_authenticates_the_old_tokens(tmp_path: Path) -> None:
    old = tmp_path / "old"
    api_key, credential_id, token = filled(old)
    archive = tmp_path / "burrow.backup"
    counts = backup.backup(old, None, archive, "test")
    assert counts["credentials"] == 1 and counts["api_keys"] == 1 and "cluster_identity" in counts
    assert mode(archive) == 0o600
    new = tmp_path / "new"
    restored = backup.restore(new, None, archive)
    assert restored == counts
    assert authenticates(new, api_key, credential_id, token)
    assert rows(new) == rows(old)
    for name in ("secret.key", "ca-key.pem", "burrow.db"):
        assert mode(new / name) == 0o600, name
    assert (new / "secret.key").read_text() == (old / "secret.key").read_text()
    assert (new / "ca.pem").read_bytes() == (old / "ca.pem").read_bytes()


def test_restore_into_postgresql_from_a_sqlite_backup(tmp_path: Path, postgres_url: str) -> None:
    old = tmp_path / "old"
    api_key, credential_id, token = filled(old)
    archive = tmp_path / "burrow.backup"
    backup.backup(old, None, archive, "test")
    backup.restore(tmp_path / "new", postgres_url, archive)
    assert authenticates(tmp_path / "new", api_key, credential_id, token, postgres_url)
    assert rows(tmp_path / "new", postgres_url) == rows(old)
    # And back: a backup of PostgreSQL restores into SQLite.
    again = tmp_path / "again.backup"
    backup.backup(tmp_path / "new", postgres_url, again, "test")
    backup.restore(tmp_path / "sqlite-again", None, again)
    assert authenticates(tmp_path / "sqlite-again", api_key, credential_id, token)


def test_restore_refuses_a_data_directory_in_use_and_changes_nothing(tmp_path: Path) -> None:
    filled(tmp_path / "old")
    archive = tmp_path / "b"
    backup.backup(tmp_path / "old", None, archive, "test")
    target = tmp_path / "target"
    filled(target)
    before = rows(target), (target / "secret.key").read_text()
    with pytest.raises(backup.BackupError, match=r"already holds secret\.key"):
        backup.restore(target, None, archive)
    assert (rows(target), (target / "secret.key").read_text()) == before


def test_restore_refuses_a_backup_of_a_newer_schema(tmp_path: Path) -> None:
    filled(tmp_path / "old")
    archive = tmp_path / "b"
    backup.backup(tmp_path / "old", None, archive, "test")
    future = tmp_path / "future"
    with tarfile.open(archive) as source, tarfile.open(future, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == backup.MANIFEST:
                manifest = json.loads(data)
                manifest["alembic_revision"] = "9999"
                data = json.dumps(manifest).encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
    with pytest.raises(backup.BackupError, match="'9999' is newer than this Burrow knows"):
        backup.restore(tmp_path / "new", None, future)
    assert not (tmp_path / "new" / "secret.key").exists() and not (tmp_path / "new" / "burrow.db").exists()


def test_backup_refuses_to_replace_a_file_and_restore_refuses_what_is_no_backup(tmp_path: Path) -> None:
    filled(tmp_path / "old")
    existing = tmp_path / "existing"
    existing.write_text("keep me")
    with pytest.raises(backup.BackupError, match="exists"):
        backup.backup(tmp_path / "old", None, existing, "test")
    assert existing.read_text() == "keep me"
    with pytest.raises(backup.BackupError, match="not a Burrow backup"):
        backup.restore(tmp_path / "new", None, existing)
    with pytest.raises(backup.BackupError, match="no server secret"):
        backup.backup(tmp_path / "empty", None, tmp_path / "out", "test")
    assert not (tmp_path / "out").exists()


def stamp_future(data_dir: Path) -> None:
    with contextlib.closing(sqlite3.connect(data_dir / "burrow.db")) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")


def test_a_schema_from_a_newer_burrow_is_refused_clearly_and_left_alone(tmp_path: Path) -> None:
    filled(tmp_path)
    stamp_future(tmp_path)
    before = snapshot(tmp_path / "burrow.db")
    with pytest.raises(
        database.SchemaTooNew, match="'9999_from_the_future', which this Burrow does not know"
    ):
        Store.open(tmp_path)
    assert snapshot(tmp_path / "burrow.db") == before
    # The command line says so in one line, exiting 2 (serve runs the same Store.open).
    result = CliRunner().invoke(app, ["admin", "accounts", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "a newer Burrow migrated it" in result.output and "Traceback" not in result.output
    engine = database.open_engine(database.sqlite_url(tmp_path))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
            "9999_from_the_future"
        )
    engine.dispose()


def test_the_cli_backs_up_and_restores(tmp_path: Path) -> None:
    api_key, credential_id, token = filled(tmp_path / "old")
    runner = CliRunner()
    made = runner.invoke(
        app, ["admin", "backup", "--data-dir", str(tmp_path / "old"), "-o", str(tmp_path / "b")]
    )
    assert made.exit_code == 0, made.output
    assert "backed up" in made.output and token not in made.output and api_key not in made.output
    done = runner.invoke(
        app, ["admin", "restore", "--data-dir", str(tmp_path / "new"), "-i", str(tmp_path / "b")]
    )
    assert done.exit_code == 0, done.output
    assert authenticates(tmp_path / "new", api_key, credential_id, token)
    again = runner.invoke(
        app, ["admin", "restore", "--data-dir", str(tmp_path / "new"), "-i", str(tmp_path / "b")]
    )
    assert again.exit_code == 2 and "restore into a new data directory" in again.output


def corrupted(archive: Path, target: Path) -> Path:
    """``archive`` with a row of the credentials table cut short."""
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as copy:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "tables/credentials.jsonl":
                data = data.rstrip(b"\n")[:-5] + b"\n"
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
    return target


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_failed_restore_leaves_the_target_empty_to_try_again(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    api_key, credential_id, token = filled(tmp_path / "old")
    archive = tmp_path / "b"
    backup.backup(tmp_path / "old", None, archive, "test")
    with pytest.raises(backup.BackupError, match="not JSON"):
        backup.restore(tmp_path / "new", url, corrupted(archive, tmp_path / "bad"))
    assert not (tmp_path / "new" / "secret.key").exists() and not (tmp_path / "new" / "burrow.db").exists()
    backup.restore(tmp_path / "new", url, archive)
    assert authenticates(tmp_path / "new", api_key, credential_id, token, url)
