"""docs/deploy.md, run: a backup of a running server restored into a new data directory serves
the old API key and the old agent authtoken (the agent verifying the restored CA)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.edge.conftest import Agent
from tests.harness import BurrowServer, burrow

pytestmark = pytest.mark.e2e


def test_a_backup_restored_into_a_new_data_directory_serves_the_old_tokens(
    tmp_path: Path, start_agent: Callable[..., Agent]
) -> None:
    old = BurrowServer(tmp_path / "old").start()
    try:
        with old.client() as http:
            made = http.post("/credentials", json={"description": "agent", "acl": ["bind:*.example.com"]})
            assert made.status_code == 201, made.text
        credential = made.json()
        old_ca = (old.data_dir / "ca.pem").read_bytes()
        # While the server runs, as from cron.
        burrow(
            "admin", "backup", "--data-dir", str(old.data_dir), "--output", str(tmp_path / "burrow.backup")
        )
    finally:
        old.stop()
    burrow(
        "admin", "restore", "--data-dir", str(tmp_path / "new"), "--input", str(tmp_path / "burrow.backup")
    )
    new = BurrowServer(tmp_path / "new", api_key=old.api_key).start()
    try:
        with new.client() as http:  # the old API key, against the REST API
            listed = http.get("/credentials")
            assert listed.status_code == 200, listed.text
            assert [item["id"] for item in listed.json()["credentials"]] == [credential["id"]]
        assert (new.data_dir / "ca.pem").read_bytes() == old_ca
        # The old authtoken; the agent trusts the CA it trusted before the restore.
        agent = start_agent(
            new, credential["token"], [{"name": "web", "kind": "http", "domain": "a.example.com"}]
        )
        assert agent.url("web").startswith("http://a.example.com")
    finally:
        new.stop()
