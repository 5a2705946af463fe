from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.harness import AppServer, BurrowServer
from tests.postgres import make_postgres_url, postgres, postgres_url  # noqa: F401 - fixtures

# Hypothesis's default 200 ms deadline per example fails on a loaded machine (the suite
# runs on shared cores); ten times that still catches an example that is pathologically slow.
settings.register_profile("shared-machine", deadline=2000)
settings.load_profile("shared-machine")


@pytest.fixture(scope="session")
def burrow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    """One server shared by tests that do not need a database of their own."""
    server = BurrowServer(tmp_path_factory.mktemp("shared") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., BurrowServer]]:
    """Start servers with data directories of their own, stopped after the test."""
    started: list[BurrowServer] = []

    def make(
        *extra: str, admin_email: str = "admin@example.com", env: dict[str, str] | None = None
    ) -> BurrowServer:
        server = BurrowServer(tmp_path / f"data{len(started)}", admin_email, env).start(*extra)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def make_app_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., AppServer]]:
    """The API application in-process, each on a database of its own (the fast tier).

    Every test runs twice: on a SQLite file and on a database of the session's PostgreSQL.
    """
    made: list[AppServer] = []
    new_url: Callable[[], str | None] = (
        request.getfixturevalue("make_postgres_url") if request.param == "postgresql" else lambda: None
    )

    def make(admin_email: str = "admin@example.com") -> AppServer:
        server = AppServer(tmp_path / f"app{len(made)}", admin_email, database_url=new_url())
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def app_server(make_app_server: Callable[..., AppServer]) -> AppServer:
    return make_app_server()


# The e2e tier: tests that start processes (`burrow serve` or the CLI, the official REST
# client, the agent SDK or v2 binary from npm, the benchmarks). `make test-fast` leaves them
# out. Files outside tests/edge say so with `pytestmark`; tests/edge is marked from here, by
# the fixtures its tests use and by the files whose own fixtures start `burrow serve`.
E2E_FIXTURES = frozenset({"start_agent", "burrow_server", "make_server"})
# The PostgreSQL tier: tests on a real PostgreSQL (the fast tier's twins marked by their
# parameter, others by the fixture). `make test` runs it, `make test-fast` does not.
POSTGRES_FIXTURES = frozenset({"postgres", "postgres_url", "make_postgres_url"})
E2E_EDGE_FILES = frozenset({"test_agent_binary.py", "test_sdk.py", "test_public.py", "test_robustness.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        in_edge = item.path.parent.name == "edge"
        if fixtures & E2E_FIXTURES or (in_edge and item.path.name in E2E_EDGE_FILES):
            item.add_marker(pytest.mark.e2e)
        if fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


# `make test-fast` installs only the project's own environment (.venv); the agent SDK, the v2
# binary, the official clients and the browser come with `make test`. So that the fast tier
# passes on a fresh clone, a process started while a test that is neither e2e nor postgres
# runs (its fixtures' setup included, of any scope) must be one of .venv's programs; any other
# fails that test, on every machine and in every tier, rather than only on a fresh clone.
_running: list[pytest.Item] = []
_popen_init = subprocess.Popen.__init__
_OWN_PROGRAMS = Path(sys.executable).parent


def _guarded_popen_init(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
    item = _running[-1] if _running else None
    if item is not None and not any(item.get_closest_marker(mark) for mark in ("e2e", "postgres")):
        command = args[0] if args else kwargs.get("args")
        program = Path(str(command[0] if isinstance(command, list | tuple) else command).split()[0])
        if program.parent != _OWN_PROGRAMS:
            raise AssertionError(
                f"{item.nodeid} starts {program}, which `make test-fast` does not install: mark it "
                "e2e (tests/conftest.py E2E_FIXTURES, E2E_EDGE_FILES or pytestmark)"
            )
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _guarded_popen_init  # type: ignore[method-assign]


def _while_running(item: pytest.Item) -> Iterator[None]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()


# Setup and call only: a wider-scoped fixture is torn down in whichever test is last to
# hold its scope, often one that never asked for it (the session's PostgreSQL stops there).
pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_while_running)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_while_running)
