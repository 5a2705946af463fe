"""PostgreSQL LISTEN/NOTIFY: writes that must take effect on every node say so at once.

A write that changes what a node caches or checks (API keys, credentials, bot users,
users, reserved names) notifies :data:`CHANNEL` with :data:`CHANGED` in its own
transaction, so a rolled-back write notifies nothing; a command for a node (stop a
session) notifies ``command:<node id>``. Each node listens on a dedicated connection, in
a thread of its own (it needs no event loop and serves the API and the edge alike), and
hands every payload to its subscribers: the store's read cache is cleared, the edge
rechecks its sessions or takes its commands.

The listener is trusted only while it is known to be connected: every
:data:`ALIVE_SECONDS` it checks its connection (a ``SELECT 1``),
and :attr:`ChangeFeed.listening` turns false when that check is overdue or failed. While
it is false the read cache is off and the edge polls as often as without notifications;
on every (re)connection subscribers get :data:`RESYNC` ("anything may have changed").
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

log = logging.getLogger("burrow.store")
CHANNEL = "burrow"
CHANGED = "changed"
ROUTES = "routes"  # a name was bound or freed somewhere in the cluster (relay routes)
RESYNC = ""  # not a payload anyone sends: the listener (re)connected or was lost
COMMAND_PREFIX = "command:"
ALIVE_SECONDS = 1.0  # the longest the listener waits before checking its connection
STALE_AFTER = 3 * ALIVE_SECONDS  # an unconfirmed listener is not trusted past this
RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)  # reconnection backoff


def notify(connection: Connection, payload: str) -> None:
    """Notify the cluster when (and only if) ``connection``'s transaction commits."""
    if connection.dialect.name == "postgresql":
        statement = text("SELECT pg_notify(:channel, :payload)")
        connection.execute(statement, {"channel": CHANNEL, "payload": payload})


def command_payload(node_id: str) -> str:
    return COMMAND_PREFIX + node_id


class ChangeFeed:
    """This node's LISTEN connection and its subscribers (PostgreSQL through psycopg only)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect  # a new autocommit psycopg connection
        self._subscribers: list[Callable[[str], None]] = []
        self._connected = False
        self._alive_at = 0.0  # when the connection last proved itself
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self.notifications = 0  # received, for tests and metrics

    @classmethod
    def for_engine(cls, engine: Engine, connect_timeout: float) -> ChangeFeed | None:
        """A feed on the engine's database, or None where there is none (not PostgreSQL
        with psycopg): then nothing is cached and the edge polls."""
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
            return None
        import psycopg

        _args, params = engine.dialect.create_connect_args(engine.url)
        params = {k: v for k, v in params.items() if k != "context"}

        def connect() -> Any:
            return psycopg.connect(
                **params,
                autocommit=True,
                connect_timeout=max(1, round(connect_timeout)),
                # A peer that vanished without a word (no RST) is noticed by the kernel too.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
            )

        return cls(connect)

    @property
    def listening(self) -> bool:
        """Whether every notification since the last :data:`RESYNC` is being received."""
        return self._connected and time.monotonic() - self._alive_at < STALE_AFTER

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(payload)`` for every notification, and with :data:`RESYNC` when the
        listener connects or is lost. It runs in the listener's thread: keep it short."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[str], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="burrow-listen", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        # Seen within ALIVE_SECONDS, when the wait for notifications ends; the thread then
        # closes its connection. Not waited for: closing a store should not take a second.
        self._stop.set()

    def _deliver(self, payload: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(payload)
            except Exception:
                log.exception("a notification subscriber failed")

    def _run(self) -> None:
        failures = 0  # in a row, since the listener last connected
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as error:
                if self._connected:
                    failures = 0  # it had connected: this loss is news
                if not self._stop.is_set():
                    shown = (str(error).splitlines() or [repr(error)])[0]
                    log.log(
                        logging.WARNING if failures == 0 else logging.DEBUG,
                        "database notifications lost; polling meanwhile",
                        extra={"fields": {"error": shown}},
                    )
                failures += 1
            finally:
                if self._connected:
                    self._connected = False
                    self._deliver(RESYNC)
                connection, self._connection = self._connection, None
                if connection is not None:
                    with contextlib.suppress(Exception):  # it is gone either way
                        connection.close()
            self._stop.wait(RETRY_SECONDS[min(failures - 1, len(RETRY_SECONDS) - 1)])

    def _listen(self) -> None:
        connection = self._connection = self._connect()
        connection.execute(f"LISTEN {CHANNEL}")
        # What changed while nobody listened is unknown: subscribers start afresh, before
        # the cache is trusted (so that nothing read before now is kept).
        self._deliver(RESYNC)
        self._alive_at = time.monotonic()
        self._connected = True
        log.info("listening for database notifications")
        while not self._stop.is_set():
            for notification in connection.notifies(timeout=ALIVE_SECONDS):
                self.notifications += 1
                self._deliver(notification.payload)
            connection.execute("SELECT 1")
            now = time.monotonic()
            if now - self._alive_at >= STALE_AFTER:
                self._deliver(RESYNC)  # it was not trusted for a while: start afresh, first
            self._alive_at = now
