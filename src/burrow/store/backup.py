"""``burrow admin backup`` and ``restore``: the database, the server secret and the agent CA in
one archive, restored into a new data directory (and database) with every token still valid.

The archive is a gzipped tar, written 0600 (it holds the secret, so it is as sensitive as
``secret.key`` itself): ``manifest.json`` (format, Burrow's version, the schema's Alembic
revision, the tables), ``secret.key``, ``ca.pem`` and ``ca-key.pem`` when the data
directory has them, and ``tables/NAME.jsonl`` (the column names, then one JSON array per
row). The rows are logical, so a backup of SQLite restores into PostgreSQL and back. The
edge's live registry (``cluster_*`` tables but ``cluster_identity``) is left out: leases
of nodes that no longer run mean nothing to a restored server.

A restore creates the schema at the backup's revision, loads the rows, then upgrades to
the newest revision this Burrow knows: a backup of an older Burrow restores into a newer
one. A backup from a newer Burrow (a revision this one does not know) is refused, and so
is a target that already holds a secret, a CA or a database.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, DateTime, Engine, MetaData, Table, inspect, select

from . import database, datadir

FORMAT = "burrow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CA_FILES = ("ca.pem", "ca-key.pem")  # edge/certs.py's CA_FILE and CA_KEY_FILE
KEPT_CLUSTER_TABLES = frozenset({"cluster_identity"})
MAX_MANIFEST_BYTES = 1 << 20


class BackupError(Exception):
    """A backup that cannot be made or restored; the message says why."""


def _kept(table: str) -> bool:
    if table == "alembic_version":
        return False
    return not table.startswith("cluster_") or table in KEPT_CLUSTER_TABLES


def _value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        raise BackupError("binary columns are not supported by this backup format")
    return value


@contextlib.contextmanager
def _snapshot_engine(url: str) -> Iterator[Engine]:
    """An engine on a consistent snapshot: for SQLite a copy made by SQLite's online backup
    (servers may keep writing meanwhile); for PostgreSQL the database itself, read in one
    REPEATABLE READ transaction."""
    path = database.sqlite_file(url)
    if path is None:
        engine = database.open_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
        return
    if not path.exists():
        raise BackupError(f"no database at {path}")
    with tempfile.TemporaryDirectory(prefix="burrow-backup-") as scratch:
        copy = Path(scratch) / "snapshot.db"
        with (
            contextlib.closing(sqlite3.connect(path)) as source,
            contextlib.closing(sqlite3.connect(copy)) as target,
        ):
            source.backup(target)
        engine = database.open_engine(f"sqlite:///{copy}")
        try:
            yield engine
        finally:
            engine.dispose()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = datadir.PRIVATE_FILE
    info.mtime = int(datetime.datetime.now(datetime.UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def backup(data_dir: Path, database_url: str | None, output: Path, version: str) -> dict[str, int]:
    """Write the archive to ``output`` (refusing to replace a file); the rows per table."""
    secret = database.load_secret_if_any(data_dir)
    if secret is None:
        raise BackupError(f"{data_dir} has no server secret ({database.SECRET_FILE}): nothing to back up")
    url = database_url or database.sqlite_url(data_dir)
    counts: dict[str, int] = {}
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.PRIVATE_FILE)
    except FileExistsError:
        raise BackupError(f"{output} exists: give a new file name") from None
    except OSError as error:
        raise BackupError(f"{output}: {error.strerror}") from None
    try:
        with (
            os.fdopen(descriptor, "wb") as handle,
            tarfile.open(fileobj=handle, mode="w:gz") as archive,
            _snapshot_engine(url) as engine,
        ):
            revision = database.current_revision(engine)
            if revision is None:
                raise BackupError("the database has no Burrow schema: nothing to back up")
            with engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    connection = connection.execution_options(isolation_level="REPEATABLE READ")
                with connection.begin():
                    reflected = MetaData()
                    reflected.reflect(connection)
                    for table in reflected.sorted_tables:
                        if not _kept(table.name):
                            continue
                        counts[table.name] = _dump_table(archive, connection, table)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "burrow_version": version,
                "alembic_revision": revision,
                "created_at": datetime.datetime.now(datetime.UTC).isoformat(),
                "tables": counts,
            }
            _add(archive, MANIFEST, json.dumps(manifest, indent=2).encode())
            _add(archive, database.SECRET_FILE, (secret.hex() + "\n").encode())
            for name in CA_FILES:
                path = data_dir / name
                if path.exists():
                    _add(archive, name, path.read_bytes())
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    return counts


def _dump_table(archive: tarfile.TarFile, connection: Any, table: Table) -> int:
    columns = [column.name for column in table.columns]
    buffer = io.BytesIO()
    buffer.write(json.dumps(columns).encode() + b"\n")
    rows = 0
    order = list(table.primary_key.columns) or list(table.columns)
    for row in connection.execute(select(table).order_by(*order)):
        buffer.write(json.dumps([_value(value) for value in row]).encode() + b"\n")
        rows += 1
    _add(archive, f"tables/{table.name}.jsonl", buffer.getvalue())
    return rows


def _read_member(archive: tarfile.TarFile, name: str, limit: int | None = None) -> bytes | None:
    try:
        info = archive.getmember(name)
    except KeyError:
        return None
    if not info.isfile():
        raise BackupError(f"the backup's {name} is not a file")
    if limit is not None and info.size > limit:
        raise BackupError(f"the backup's {name} is too large")
    handle = archive.extractfile(info)
    assert handle is not None
    with handle:
        return handle.read()


@contextlib.contextmanager
def _open_archive(source: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, Any]]]:
    try:
        opened = tarfile.open(source, mode="r:gz")  # noqa: SIM115  # closed by the with below
    except FileNotFoundError:
        raise BackupError(f"{source}: no such file") from None
    except (tarfile.TarError, OSError, EOFError) as error:
        raise BackupError(f"{source} is not a Burrow backup ({error})") from None
    with opened as archive:
        try:
            raw = _read_member(archive, MANIFEST, MAX_MANIFEST_BYTES)
            manifest = json.loads(raw) if raw is not None else None
        except (ValueError, tarfile.TarError, OSError, EOFError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(f"{source} is not a Burrow backup (no {MANIFEST} of format {FORMAT})")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"{source} is a backup of format {manifest.get('format_version')!r}; "
                f"this Burrow reads format {FORMAT_VERSION}"
            )
        yield archive, manifest


def restore(data_dir: Path, database_url: str | None, source: Path) -> dict[str, int]:
    """Restore ``source`` into a new data directory (and empty database); the rows per table."""
    with _open_archive(source) as (archive, manifest):
        revision = manifest.get("alembic_revision")
        known = database.known_revisions()
        if not isinstance(revision, str) or revision not in known:
            raise BackupError(
                f"the backup's schema revision {revision!r} is newer than this Burrow knows "
                f"(newest: {database.head_revision()}): restore it with the Burrow that made it, or newer"
            )
        secret_text = _read_member(archive, database.SECRET_FILE, 1024)
        if secret_text is None:
            raise BackupError(f"the backup has no {database.SECRET_FILE}")
        secret = database.parse_secret(
            secret_text.decode(errors="replace"), f"the backup's {database.SECRET_FILE}"
        )
        from_env = os.environ.get(database.SECRET_ENV)
        if from_env is not None and database.parse_secret(from_env, database.SECRET_ENV) != secret:
            raise BackupError(
                f"{database.SECRET_ENV} is set to another secret than the backup's: none of the backup's "
                "tokens would authenticate (unset it, or set it to the backed-up secret)"
            )
        datadir.prepare(data_dir)
        url = database_url or database.sqlite_url(data_dir)
        with datadir.private_files(), datadir.setup_lock(data_dir):
            present = [name for name in (database.SECRET_FILE, *CA_FILES) if (data_dir / name).exists()]
            sqlite_file = database.sqlite_file(url)
            if sqlite_file is not None and sqlite_file.exists() and sqlite_file.stat().st_size > 0:
                present.append(sqlite_file.name)
            if present:
                raise BackupError(
                    f"{data_dir} already holds {', '.join(present)}: restore into a new data directory"
                )
            engine = database.open_engine(url)
            try:
                if inspect(engine).get_table_names():
                    raise BackupError("the database is not empty: restore into a new, empty database")
                try:
                    # One transaction: on PostgreSQL (transactional DDL) a failure leaves nothing.
                    with engine.begin() as connection:
                        counts = _load(archive, connection, revision, manifest)
                        database.migrate_on(connection)
                except BaseException:
                    if sqlite_file is not None:  # SQLite's DDL commits as it goes: the file goes
                        engine.dispose()
                        for suffix in ("", "-wal", "-shm", "-journal"):
                            sqlite_file.with_name(sqlite_file.name + suffix).unlink(missing_ok=True)
                    raise
            finally:
                engine.dispose()
            for name in CA_FILES:
                data = _read_member(archive, name, 1 << 20)
                if data is not None:
                    descriptor = os.open(
                        data_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.PRIVATE_FILE
                    )
                    with os.fdopen(descriptor, "wb") as handle:
                        handle.write(data)
            # Last: a restore that failed earlier leaves no secret, so it can be run again.
            descriptor = os.open(
                data_dir / database.SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.PRIVATE_FILE
            )
            with os.fdopen(descriptor, "w") as text_handle:
                text_handle.write(secret.hex() + "\n")
    return counts


def _load(
    archive: tarfile.TarFile, connection: Connection, revision: str, manifest: dict[str, Any]
) -> dict[str, int]:
    """The schema at the backup's ``revision``, then its rows, on the caller's transaction."""
    database.migrate_on(connection, revision)
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise BackupError("the backup's manifest lists no tables")
    counts: dict[str, int] = {}
    reflected = MetaData()
    reflected.reflect(connection)
    by_name = {table.name: table for table in reflected.sorted_tables}
    for name in [table.name for table in reflected.sorted_tables if table.name in tables]:
        counts[name] = _load_table(archive, connection, by_name[name])
    unknown = set(tables) - set(counts)
    if unknown:
        raise BackupError(f"the backup holds tables its schema revision lacks: {', '.join(sorted(unknown))}")
    return counts


def _load_table(archive: tarfile.TarFile, connection: Any, table: Table) -> int:
    member = f"tables/{table.name}.jsonl"
    try:
        handle: IO[bytes] | None = archive.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise BackupError(f"the backup lacks {member}")
    with handle:
        lines = iter(handle)
        try:
            columns = json.loads(next(lines))
        except (StopIteration, ValueError):
            raise BackupError(f"the backup's {member} has no column list") from None
        if not isinstance(columns, list) or not set(columns) <= set(table.columns.keys()):
            raise BackupError(f"the backup's {member} names columns the table lacks")
        dates = {name for name in columns if isinstance(table.columns[name].type, DateTime)}
        batch: list[dict[str, Any]] = []
        rows = 0
        for line in lines:
            try:
                values = json.loads(line)
            except ValueError:
                raise BackupError(f"the backup's {member} has a line that is not JSON") from None
            if not isinstance(values, list) or len(values) != len(columns):
                raise BackupError(f"the backup's {member} has a row of the wrong width")
            row = dict(zip(columns, values, strict=True))
            for name in dates:
                if isinstance(row[name], str):
                    row[name] = datetime.datetime.fromisoformat(row[name])
            batch.append(row)
            rows += 1
            if len(batch) >= 1000:
                connection.execute(table.insert(), batch)
                batch = []
        if batch:
            connection.execute(table.insert(), batch)
    return rows
