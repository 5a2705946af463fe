"""Point reads compiled once and run on the DBAPI connection directly.

SQLAlchemy's Core execution costs about 20 µs per statement; the request hot path
(authenticating an API key, getting one resource) needs two reads, which would cost more
than the HTTP handling itself. A statement here is compiled once by SQLAlchemy for the
engine's dialect and its rows decoded with SQLAlchemy's own result processors, so it
stays portable across databases while skipping the per-call machinery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from sqlalchemy import Engine, PoolProxiedConnection, Select

from burrow.domain import errors
from burrow.store.notify import ChangeFeed


class PointRead:
    def __init__(self, engine: Engine, statement: Select[Any]) -> None:
        dialect = engine.dialect
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        names = tuple(compiled.positiontup or ()) if compiled.positional else ()
        self._positional: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = (
            (lambda values: tuple(values[name] for name in names)) if compiled.positional else None
        )
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        ]
        self._processors: list[tuple[int, Callable[[Any], Any]]] = [
            (index, processor) for index, processor in enumerate(processors) if processor is not None
        ]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        if self._positional is None:
            return values
        return self._positional(values)

    def decode(self, row: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if row is None or not self._processors:
            return row
        values = list(row)
        for index, processor in self._processors:
            if values[index] is not None:
                values[index] = processor(values[index])
        return tuple(values)


class PointReader:
    """Runs :class:`PointRead` statements on one dedicated connection, outside transactions.

    Results are cached until the database changes. Commits made through this process's
    engine clear the cache at once (see :meth:`invalidate`). Commits by other processes
    are noticed, with SQLite, through ``PRAGMA data_version``, checked at most every
    :attr:`RECHECK_SECONDS` (the check costs two ``fcntl`` calls, more than a cached read);
    with PostgreSQL, through the notifications of ``feed`` (:mod:`burrow.store.notify`),
    which clear the cache: without a feed, or while it is not listening, nothing is cached.

    A result is kept only if no invalidation happened while it was read (``generation``):
    a read racing a notification must not put back what the notification cleared.
    """

    MAX_CACHED = 65536
    RECHECK_SECONDS = 0.001

    def __init__(self, engine: Engine, feed: ChangeFeed | None = None) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._feed = feed
        self._connection: PoolProxiedConnection | None = engine.raw_connection()
        self._driver: Any = self._connection.driver_connection  # SQLite's never changes
        self.cache: dict[Hashable, Any] = {}
        self.generation = 0
        self._data_version: Any = None
        self._checked_at = 0.0

    @property
    def caches(self) -> bool:
        return self._is_sqlite or (self._feed is not None and self._feed.listening)

    def invalidate(self) -> None:
        self.generation += 1
        self.cache.clear()

    def cached(self, key: Hashable) -> Any:
        """What is cached under ``key``: None if nothing is, or while nothing may be cached."""
        if not self.caches:
            return None
        self.validate_cache()
        return self.cache.get(key)

    def remember(self, key: Hashable, value: Any, generation: int) -> None:
        """Cache ``value``, read since ``generation``, unless the database changed meanwhile."""
        if generation == self.generation and self.caches:
            self.cache[key] = value
            if generation != self.generation:  # invalidated meanwhile, by the listener's thread
                self.cache.pop(key, None)

    def validate_cache(self) -> None:
        """Drop cached results if another process may have changed the database."""
        if not self._is_sqlite:  # notifications invalidate
            if len(self.cache) >= self.MAX_CACHED:
                self.invalidate()
            return
        now = time.monotonic()
        if now - self._checked_at < self.RECHECK_SECONDS and len(self.cache) < self.MAX_CACHED:
            return
        self._checked_at = now
        version = self._driver.execute("PRAGMA data_version").fetchone()
        if version != self._data_version or len(self.cache) >= self.MAX_CACHED:
            self.invalidate()
            self._data_version = version

    def fetch_one(self, read: PointRead, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        parameters = read.parameters(values)
        if not self.caches:
            return read.decode(self._read_reconnecting(read.sql, parameters))
        self.validate_cache()
        key = (read.sql, parameters if isinstance(parameters, tuple) else tuple(parameters.items()))
        try:
            return self.cache[key]  # type: ignore[no-any-return]
        except KeyError:
            pass
        generation = self.generation
        if self._is_sqlite:
            # Python's sqlite3 opens no transaction for a SELECT, so each read sees the
            # newest committed data.
            row = read.decode(self._driver.execute(read.sql, parameters).fetchone())
        else:
            row = read.decode(self._read_reconnecting(read.sql, parameters))
        self.remember(key, row, generation)
        return row

    def _read_reconnecting(self, sql: str, parameters: Any) -> tuple[Any, ...] | None:
        """One row, reconnecting if the database dropped this connection (a restart, a
        failover); DATABASE_UNAVAILABLE (503) while it cannot be reached."""
        if self._connection is not None:
            try:
                return self._read(sql, parameters)
            except errors.BurrowError:
                pass  # the connection was lost: connect anew below
        try:
            self._connection = self._engine.raw_connection()
        except self._engine.dialect.loaded_dbapi.Error as error:  # the pool raises the driver's own
            raise errors.DATABASE_UNAVAILABLE() from error
        return self._read(sql, parameters)

    def _read(self, sql: str, parameters: Any) -> tuple[Any, ...] | None:
        connection = self._connection
        assert connection is not None
        dialect = self._engine.dialect
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(sql, parameters)
                row = cursor.fetchone()
            finally:
                cursor.close()
            connection.rollback()  # end the implicit transaction: no stale snapshot
        except dialect.loaded_dbapi.Error as error:
            if not dialect.is_disconnect(error, connection.dbapi_connection, None):
                connection.rollback()
                raise
            connection.invalidate()  # the pool forgets it
            self._connection = None
            raise errors.DATABASE_UNAVAILABLE() from error
        return tuple(row) if row is not None else None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
