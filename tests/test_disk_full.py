"""A full disk: writes answer 503 ERR_NGROK_90507 and change nothing, readiness says so, and
both recover once space is free (a small tmpfs holds the data directory)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e  # burrow serve on a tmpfs the test mounts (as root, as CI runs)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_answers_503_changes_nothing_and_recovers(small_disk: Path) -> None:
    server = BurrowServer(small_disk / "data").start("--no-edge", "--no-access-log")
    try:
        with server.client() as http:
            before = http.get("/credentials").json()["credentials"]
            filler = small_disk / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
            for _ in range(3):
                refused = http.post("/credentials", json={"description": "x" * 200, "metadata": "m" * 2000})
                assert refused.status_code == 503, refused.text
                assert refused.json()["error_code"] == "ERR_NGROK_90507"
            ready = httpx.get(f"{server.base_url}/readyz")
            assert (ready.status_code, ready.json()["error_code"]) == (503, "ERR_NGROK_90507")
            filler.unlink()
            assert http.get("/credentials").json()["credentials"] == before  # nothing half-written
            assert httpx.get(f"{server.base_url}/readyz").status_code == 200
            assert http.post("/credentials", json={"description": "after"}).status_code == 201
    finally:
        server.stop()
    assert "Traceback" not in server.log_path.read_text()
