"""Running real Burrow servers for tests: ``burrow serve`` subprocesses on free ports."""

from __future__ import annotations

import atexit
import contextlib
import http.server
import json
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BURROW = str(BIN / "burrow")
OFFICIAL_CLIENT_PYTHON = ROOT / ".venvs" / "ngrok-api" / "bin" / "python"


# What `burrow serve` listens on by default (cli/settings.py). No test or benchmark may need
# them: `make test` must pass while `make serve` runs.
DEFAULT_PORTS = (4080, 4443, 8080, 8443, 8444)


@contextlib.contextmanager
def occupied(ports: tuple[int, ...]) -> Iterator[None]:
    """Listen on these loopback ports (those not taken already) for the duration."""
    held = []
    for port in ports:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            held.append(sock)
        except OSError:  # taken already: as good for the test
            sock.close()
    try:
        yield
    finally:
        for sock in held:
            sock.close()


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port free now, from below the kernel's ephemeral range: a port the kernel
    hands out (bind to 0) may be given to another process's outgoing connection before the
    server started with it binds it ("address already in use"). Never one this process has
    handed out already: a server's ports are all picked before it binds any of them."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = random.randrange(10000, max(low, 10001))
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port


@contextlib.contextmanager
def local_http_service(reply: Callable[[http.server.BaseHTTPRequestHandler], str]) -> Iterator[int]:
    """A local HTTP service for agents to expose, answering GETs with ``reply(request)``; its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = reply(self).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    try:
        yield service.server_address[1]
    finally:
        service.shutdown()
        service.server_close()


def edge_args() -> list[str]:
    """Free loopback ports for the edge's listeners, so servers never collide."""
    tcp = free_port()
    return [
        "--agent-addr",
        f"127.0.0.1:{free_port()}",
        "--http-addr",
        f"127.0.0.1:{free_port()}",
        "--tls-addr",
        f"127.0.0.1:{free_port()}",
        "--https-addr",
        f"127.0.0.1:{free_port()}",
        "--tcp-ports",
        f"{tcp}-{tcp}",
    ]


def burrow(
    *args: str, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BURROW, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


# The edge's live registry (store/cluster.py): leases are renewed every few seconds, so these
# change without any request; a snapshot is of what requests store.
LIVE_TABLES = frozenset(
    {"cluster_nodes", "cluster_sessions", "cluster_tunnels", "cluster_bindings", "cluster_commands"}
)


def snapshot(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every stored table, to show that a refused request changed nothing."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            if row[0] not in LIVE_TABLES
        ]
        return {
            table: sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)
            for table in tables
        }


_migrated: list[Path] = []  # a new SQLite data directory, migrated once per test process


def _copy_migrated_data_dir(data_dir: Path) -> None:
    """Make ``data_dir`` a copy of a data directory migrated once per test process: migrating
    each test's own costs ~50 ms, a copy ~1 ms (and Store.open then finds it at the head)."""
    from burrow.store.store import Store

    if not _migrated:
        template = Path(tempfile.mkdtemp(prefix="burrow-migrated-")) / "data"
        Store.open(template).close()
        atexit.register(shutil.rmtree, template.parent, True)
        _migrated.append(template)
    shutil.copytree(_migrated[0], data_dir, dirs_exist_ok=True)


class AppServer:
    """The API application in this process, on a database of its own: the fast tier.

    The same application ``burrow serve`` runs, reached through Starlette's TestClient
    instead of a socket; accounts and users are made through the store, as ``burrow init``
    and ``burrow admin users create`` do. It has no edge: nothing is ever live.
    """

    base_url = "http://testserver"

    def __init__(
        self, data_dir: Path, admin_email: str = "admin@example.com", database_url: str | None = None
    ) -> None:
        from burrow.cli.node import api_with_dashboard
        from burrow.dashboard import DashboardSettings
        from burrow.store.store import Store

        self.data_dir = data_dir
        if database_url is None:
            _copy_migrated_data_dir(data_dir)
        self.store = Store.open(data_dir, database_url)
        user, self.api_key = self.store.create_account(admin_email)
        self.account_id = user.account_id
        self.app = api_with_dashboard(self.store, DashboardSettings())  # as burrow serve builds it

    def close(self) -> None:
        self.store.close()

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key or self.api_key}", "Ngrok-Version": "2"}
        return self._client(headers)

    def bare_client(self) -> httpx.Client:
        return self._client({})

    def _client(self, headers: dict[str, str]) -> httpx.Client:
        from starlette.testclient import TestClient

        # An unexpected error answers 500, as it would over a socket, rather than raising here.
        return TestClient(self.app, self.base_url, raise_server_exceptions=False, headers=headers)

    def create_user(self, email: str, role: str = "member", account: str | None = None) -> str:
        """A new user's first API key token; ``account`` is an account id or one of its users' email."""
        account_id = self.account_id
        if account is not None:
            found = {user.account_id for user in self.store.find_user_by_email(account)}
            account_id = found.pop() if len(found) == 1 else account
        return self.store.create_user(account_id, email, role)[1]

    def new_account(self, admin_email: str) -> str:
        """A new, separate account in the same database; its admin's API key token."""
        return self.store.create_account(admin_email)[1]

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (SQLite or PostgreSQL), to show that a refused request changed nothing."""
        from sqlalchemy import MetaData, select

        tables = MetaData()
        tables.reflect(self.store.engine)
        with self.store.engine.connect() as connection:
            return {
                name: sorted((tuple(row) for row in connection.execute(select(table))), key=repr)
                for name, table in sorted(tables.tables.items())
            }


class BurrowServer:
    """A ``burrow serve`` process on its own data directory and port.

    ``env`` adds environment variables for ``burrow init`` and ``burrow serve``, e.g.
    ``BURROW_DATABASE_URL`` to run on PostgreSQL or ``BURROW_SECRET_KEY``.
    """

    def __init__(
        self,
        data_dir: Path,
        admin_email: str = "admin@example.com",
        env: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        """``burrow init`` on ``data_dir``, unless ``api_key`` is given: then the data directory
        exists (e.g. restored from a backup) and that is its admin's key."""
        self.data_dir = data_dir
        self.env = dict(env or {})
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.api_key = (
            api_key
            or burrow(
                "init", "--data-dir", str(data_dir), "--admin-email", admin_email, env=self.env
            ).stdout.strip()
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, file_limit: int | None = None) -> BurrowServer:
        """Run ``burrow serve`` with ``extra`` options (and a lower open-file limit, if given)."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.edge = edge_args()

        def limit_files() -> None:
            if file_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))

        self.process = subprocess.Popen(
            [
                BURROW,
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--api-addr",
                f"127.0.0.1:{self.port}",
                *self.edge,
                *extra,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit_files,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"burrow serve exited: {self.log_path.read_text()}")
            try:
                # /healthz waits up to 1 s on the database itself: give it more than that.
                httpx.get(f"{self.base_url}/healthz", timeout=5)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        # What it is doing: `burrow serve` writes its threads' stacks on SIGUSR1.
        self.process.send_signal(signal.SIGUSR1)
        time.sleep(1)
        raise RuntimeError(f"burrow serve did not come up:\n{self.log_path.read_text()[-20000:]}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._log.close()
            self.process = None
        return code

    def create_user(self, email: str, role: str = "member", account: str | None = None) -> str:
        args = [
            "admin",
            "users",
            "create",
            "--data-dir",
            str(self.data_dir),
            "--email",
            email,
            "--role",
            role,
        ]
        if account:
            args += ["--account", account]
        return burrow(*args, env=self.env).stdout.strip()

    def new_account(self, admin_email: str) -> str:
        """A new, separate account in the same data directory; its admin's API key token."""
        return burrow(
            "init", "--data-dir", str(self.data_dir), "--admin-email", admin_email, env=self.env
        ).stdout.strip()

    def client(self, api_key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key or self.api_key}", "Ngrok-Version": "2"},
            timeout=30,
        )

    @property
    def database(self) -> Path:
        return self.data_dir / "burrow.db"

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return snapshot(self.database)

    def bare_client(self) -> httpx.Client:
        """A client that sends no headers of its own: each request says what it sends."""
        return httpx.Client(base_url=self.base_url, timeout=30)

    def edge_addr(self, option: str) -> str:
        return self.edge[self.edge.index(option) + 1]

    @property
    def agent_addr(self) -> str:
        return self.edge_addr("--agent-addr")

    @property
    def http_addr(self) -> str:
        return self.edge_addr("--http-addr")

    @property
    def tls_addr(self) -> str:
        return self.edge_addr("--tls-addr")

    @property
    def https_addr(self) -> str:
        return self.edge_addr("--https-addr")

    @property
    def tcp_port(self) -> int:
        return int(self.edge_addr("--tcp-ports").split("-")[0])

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.pem"

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user plus system), from /proc."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        """The log's JSON lines, parsed (any other line skipped)."""
        entries = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def wait_log(self, matches: Callable[[dict[str, Any]], bool], timeout: float = 5) -> dict[str, Any]:
        """The first log entry that ``matches``, waiting for it (some logs are written in
        batches, within 0.2 s) up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((entry for entry in self.log_entries() if matches(entry)), None)
            if found is not None:
                return found
            assert time.monotonic() < deadline, f"no log entry matched within {timeout} s"
            time.sleep(0.05)
