"""Safe start-up: concurrent init and serve on one data directory, private files, the first key."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness import BURROW, BurrowServer, edge_args, free_port

# Every test here runs `burrow init` or `burrow serve` processes (about a CPU-second each):
# the e2e tier.
pytestmark = pytest.mark.e2e

TOKEN = re.compile(r"\b\w{27}_\w{28}\b")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def init(data_dir: Path, email: str) -> subprocess.CompletedProcess[str]:
    # A generous timeout: twenty interpreters starting at once on a busy machine are slow.
    return subprocess.run(
        [BURROW, "init", "--data-dir", str(data_dir), "--admin-email", email],
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_token_alone(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert TOKEN.fullmatch(result.stdout.strip()), result.stdout
    return result.stdout.strip()


@pytest.mark.timeout(1800)  # 200 interpreters of ~1 CPU-second each: minutes on a busy machine
def test_200_concurrent_inits_on_new_data_dirs_never_crash(tmp_path: Path) -> None:
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda n: init(tmp_path / f"d{n}" / "data", f"a{n}@example.com"), range(200)))
    for result in results:
        assert_token_alone(result)


def test_concurrent_inits_on_one_new_data_dir_make_one_database_and_one_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda n: init(data_dir, f"a{n}@example.com"), range(20)))
    tokens = [assert_token_alone(result) for result in results]
    assert len(set(tokens)) == 20
    # Every key works against one server: all processes hashed with the same secret.
    server = BurrowServer(data_dir).start()
    try:
        for token in tokens:
            with server.client(token) as http:
                assert http.get("/credentials").status_code == 200
    finally:
        server.stop()


def _serve(data_dir: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BURROW, "serve", "--data-dir", str(data_dir), "--api-addr", f"127.0.0.1:{port}", *edge_args()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_serves_on_one_empty_data_dir_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = [free_port(), free_port()]
    processes = [_serve(data_dir, port) for port in ports]
    try:
        deadline = time.monotonic() + 30
        while not any(process.poll() is not None for process in processes):
            assert time.monotonic() < deadline, "neither server was refused"
            time.sleep(0.05)
        loser = next(i for i, process in enumerate(processes) if process.poll() is not None)
        winner = 1 - loser
        out, err = processes[loser].communicate(timeout=10)
        assert processes[loser].returncode == 1
        assert f"another burrow serve is running on the data directory {data_dir}" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{ports[winner]}/healthz", timeout=1).status_code == 200
                break
            except httpx.HTTPError:
                assert processes[winner].poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        # The first-run API key is on the winner's stdout, and it works.
        stdout = processes[winner].stdout
        assert stdout is not None
        key = stdout.readline().strip()
        assert TOKEN.fullmatch(key), key
        headers = {"Authorization": f"Bearer {key}", "Ngrok-Version": "2"}
        assert httpx.get(f"http://127.0.0.1:{ports[winner]}/credentials", headers=headers).status_code == 200
        # While it runs (the WAL files exist), everything in the data dir is private.
        assert mode(data_dir) == 0o700
        for name in ("burrow.db", "burrow.db-wal", "burrow.db-shm", "secret.key", "ca-key.pem"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=15) for process in processes]
    # ... and never in its log (stderr), which says where it is.
    out, err = outputs[winner]
    assert processes[winner].returncode == 0 and out == ""
    assert not TOKEN.search(err) and "first run" in err.lower() and "admin@localhost" in err


def test_existing_data_dirs_and_files_are_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "lax"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    assert_token_alone(init(data_dir, "a@example.com"))
    assert mode(data_dir) == 0o700
    for name in ("burrow.db", "secret.key"):
        assert mode(data_dir / name) == 0o600
        os.chmod(data_dir / name, 0o644)
    os.chmod(data_dir, 0o755)
    assert_token_alone(init(data_dir, "b@example.com"))
    assert mode(data_dir) == 0o700
    for name in ("burrow.db", "secret.key"):
        assert mode(data_dir / name) == 0o600, name


def test_a_damaged_secret_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert_token_alone(init(data_dir, "a@example.com"))
    (data_dir / "secret.key").write_text("")
    result = init(data_dir, "b@example.com")
    assert result.returncode != 0 and result.stdout == ""
    assert "secret.key is not a server secret" in " ".join(result.stderr.split())


def test_the_ssh_host_key_is_made_once_and_private(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from burrow.store import datadir

    data_dir = tmp_path / "data"
    first = datadir.ssh_host_key(data_dir)
    path = data_dir / datadir.SSH_HOST_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert datadir.ssh_host_key(data_dir) == first  # kept: known_hosts entries stay valid
    key = serialization.load_ssh_private_key(first, password=None)
    assert key.public_key() is not None
