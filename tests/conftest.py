from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import BurrowServer


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

    def make(*extra: str, admin_email: str = "admin@example.com") -> BurrowServer:
        server = BurrowServer(tmp_path / f"data{len(started)}", admin_email).start(*extra)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()
