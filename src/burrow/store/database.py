"""Opening the database: the engine, its SQLite settings, migrations, the server secret."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect, make_url, text

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
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Create the schema, or upgrade it to the newest revision.

    On PostgreSQL, nodes starting together take turns on an advisory lock held until the
    migration's transaction ends; SQLite callers hold the data directory's setup lock.
    """
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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


def load_secret(data_dir: Path) -> bytes:
    """The key tokens are hashed with: from the environment, or a 0600 file in data_dir."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env.encode("utf-8")
    path = data_dir / SECRET_FILE
    try:
        text_key = path.read_text().strip()
    except FileNotFoundError:
        pass
    else:
        datadir.tighten(path, datadir.PRIVATE_FILE)
        try:
            key = bytes.fromhex(text_key)
        except ValueError:
            key = b""
        if len(key) < 32:
            raise DamagedSecret(f"{path} is not a server secret (64 hex digits); restore it from a backup")
        return key
    # Callers hold the setup lock, so no other process is writing the file meanwhile.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, datadir.PRIVATE_FILE)
    key = secrets.token_bytes(32)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex() + "\n")
    return key
