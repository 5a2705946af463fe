"""Opening the database: the engine, its SQLite settings, migrations, the server secret."""

from __future__ import annotations

import errno
import functools
import os
import secrets
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, inspect, make_url, text
from sqlalchemy.engine import ExceptionContext

from burrow.domain import errors
from burrow.store.identity import IdentityError

from . import datadir

SECRET_FILE = "secret.key"
DATABASE_FILE = "burrow.db"
SECRET_ENV = "BURROW_SECRET_KEY"
# pg_advisory_xact_lock's key for migrations: any constant all Burrow nodes agree on.
MIGRATION_LOCK_KEY = int.from_bytes(b"burrow", "big")


class DamagedSecret(Exception):
    """The secret file exists but holds no secret: replacing it would void every token."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / DATABASE_FILE}"


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_settings(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run while one writer commits; NORMAL sync is durable
            # across application crashes, which is what WAL needs.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    # Pre-ping replaces pooled connections that a restart or failover closed. The store runs
    # on the event loop, so a database that does not answer must not hold it for long.
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if url.startswith("postgresql") else {}
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    event.listen(engine, "handle_error", _unavailable)
    return engine


CONNECT_TIMEOUT_SECONDS = 2


def _unavailable(context: ExceptionContext) -> None:
    """A database that cannot be reached is a 503 (ERR_NGROK_90504), not an internal error.

    Lost connections are still invalidated by SQLAlchemy, so the next use reconnects.
    """
    if context.is_pre_ping:
        return  # the pool handles it: it connects anew
    if storage_full(context.original_exception):
        raise errors.STORAGE_FULL() from context.original_exception
    lost = context.is_disconnect or isinstance(context.sqlalchemy_exception, exc.OperationalError)
    if lost:
        raise errors.DATABASE_UNAVAILABLE() from context.original_exception


def storage_full(problem: BaseException | None) -> bool:
    """Whether ``problem`` (a driver's error, or one it caused) says the disk is full: SQLite's
    SQLITE_FULL, PostgreSQL's disk_full (53100), or ENOSPC."""
    while problem is not None:
        if isinstance(problem, OSError) and problem.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(problem) or getattr(problem, "sqlstate", None) == "53100":
            return True
        problem = problem.__cause__ or getattr(problem, "orig", None)
    return False


def is_reachable(engine: Engine) -> bool:
    """Whether the database answers now (for readiness)."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except (errors.BurrowError, exc.DBAPIError):
        return False
    return True


class SchemaTooNew(Exception):
    """The database was migrated by a newer Burrow: this one would misread it, so it refuses."""


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every schema revision this Burrow's migrations know."""
    scripts = ScriptDirectory.from_config(_alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create the schema, or upgrade it to the newest revision (or to ``revision``).

    A database at a revision this Burrow does not know, made by a newer Burrow, is refused
    (:class:`SchemaTooNew`) before anything is changed. On PostgreSQL, nodes starting
    together take turns on an advisory lock held until the migration's transaction ends;
    SQLite callers hold the data directory's setup lock.
    """
    with engine.begin() as connection:
        migrate_on(connection, revision)


def migrate_on(connection: Connection, revision: str = "head") -> None:
    """:func:`migrate` within the caller's transaction on ``connection``."""
    config = _alembic_config()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(
            f"the database's schema is at revision {current!r}, which this Burrow does not know "
            f"(its newest is {head_revision()!r}): a newer Burrow migrated it. Run that version or a "
            "newer one, or restore a backup made before the upgrade (docs/deploy.md, 'Upgrades')"
        )
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def protect_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does, or tighten an existing one.

    SQLite gives the -wal and -shm files it creates later the database file's mode.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, datadir.PRIVATE_FILE)
    os.close(descriptor)
    for suffix in ("", "-wal", "-shm", "-journal"):
        datadir.tighten(path.with_name(path.name + suffix), datadir.PRIVATE_FILE)


def is_initialized(engine: Engine) -> bool:
    return inspect(engine).has_table("accounts")


SECRET_BYTES = 32


def _parse_secret(text: str, source: str) -> bytes:
    """The key in ``text``: 64 hex digits, what ``secret.key`` holds."""
    value = text.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != SECRET_BYTES:
        raise IdentityError(
            f"{source} must be {SECRET_BYTES * 2} hexadecimal digits (what secret.key holds, e.g. "
            "from 'python3 -c \"import secrets; print(secrets.token_hex(32))\"'), not something else"
        )
    return key


def parse_secret(text: str, source: str) -> bytes:
    """The key in ``text`` (64 hex digits), or :class:`IdentityError` naming ``source``."""
    return _parse_secret(text, source)


def load_secret_if_any(data_dir: Path) -> bytes | None:
    """The secret (environment first, then ``secret.key``), or None if there is none yet."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        return _parse_secret(from_env, SECRET_ENV)
    path = data_dir / SECRET_FILE
    if not path.exists():
        return None
    return load_secret(data_dir)


def load_secret(data_dir: Path) -> bytes:
    """The key tokens are hashed with: from the environment, or a 0600 file in data_dir (made once)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        return _parse_secret(from_env, SECRET_ENV)
    path = data_dir / SECRET_FILE
    try:
        text_key = path.read_text()
    except FileNotFoundError:
        pass
    else:
        datadir.tighten(path, datadir.PRIVATE_FILE)
        try:
            return _parse_secret(text_key, str(path))
        except IdentityError:
            raise DamagedSecret(
                f"{path} is not a server secret (64 hex digits); restore it from a backup"
            ) from None
    # Callers hold the setup lock, so no other process is writing the file meanwhile.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.PRIVATE_FILE)
    key = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex() + "\n")
    return key
