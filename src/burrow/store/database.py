"""Opening the database: the engine, its SQLite settings, migrations, the server secret."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, inspect
from sqlalchemy.engine import ExceptionContext

from burrow.domain import errors
from burrow.store.identity import IdentityError

SECRET_FILE = "secret.key"
DATABASE_FILE = "burrow.db"
SECRET_ENV = "BURROW_SECRET_KEY"


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
    lost = context.is_disconnect or isinstance(context.sqlalchemy_exception, exc.OperationalError)
    if lost:
        raise errors.DATABASE_UNAVAILABLE() from context.original_exception


def is_reachable(engine: Engine) -> bool:
    """Whether the database answers now (for readiness)."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except (errors.BurrowError, exc.DBAPIError):
        return False
    return True


def migrate(engine: Engine) -> None:
    """Create the schema, or upgrade it to the newest revision."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


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


def load_secret(data_dir: Path) -> bytes:
    """The key tokens are hashed with: from the environment, or a 0600 file in data_dir (made once)."""
    from_env = os.environ.get(SECRET_ENV)
    if from_env is not None:
        return _parse_secret(from_env, SECRET_ENV)
    path = data_dir / SECRET_FILE
    try:
        return _parse_secret(path.read_text(), str(path))
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    key = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.hex() + "\n")
    return key
