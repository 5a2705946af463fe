"""The Python snippets and shell commands in docs/client.md run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import BIN, DEFAULT_PORTS, BurrowServer, occupied

DOC = Path(__file__).resolve().parent.parent / "docs" / "client.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def env(server: BurrowServer, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BURROW_API_KEY": server.api_key,
        "BURROW_API_URL": server.base_url,
        "BURROW_CONFIG": str(tmp_path / "config.json"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippets_run(burrow_server: BurrowServer, tmp_path: Path, index: int) -> None:
    snippet = blocks("python")[index]
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(burrow_server, tmp_path),
    )
    assert result.returncode == 0, result.stderr


def test_shell_commands_run(burrow_server: BurrowServer, tmp_path: Path) -> None:
    for command in blocks("sh")[0].strip().splitlines():
        result = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(burrow_server, tmp_path),
        )
        assert result.returncode == 0, (command, result.stderr)


def test_no_other_doc_shows_commands_untested() -> None:
    """Commands and snippets live in docs/client.md (run above) and README.md (test_readme.py);
    traffic-policy.md's YAML policies are compiled by tests/domain/test_traffic_policy.py;
    deploy.md's install, configuration, backup/restore and unit steps run in
    tests/edge/test_deploy.py (all but useradd/systemctl/createdb, which need a booted system)
    and its alert rules are checked by tests/test_deploy_files.py."""
    tested_elsewhere = {"traffic-policy.md": {"yaml"}, "deploy.md": {"sh", "yaml"}}
    assert len(blocks("sh")) == 1
    for page in DOC.parent.glob("*.md"):
        if page != DOC:
            shown = re.findall(r"^```(sh|bash|console|python|yaml)$", page.read_text(), flags=re.M)
            shown = [kind for kind in shown if kind not in tested_elsewhere.get(page.name, set())]
            assert not shown, f"{page.name} shows {shown}: run them in a test"


@pytest.mark.e2e
def test_make_bench_runs() -> None:
    """docs/benchmarks.md's `make bench`, with 1 s wrk runs and 32 MiB downloads: the three
    benchmarks run and report.

    Only that they run: the figures are judged in docs/benchmarks.md, never by a test.
    """
    with occupied(DEFAULT_PORTS):  # the benchmarks use free ports, never the defaults
        result = subprocess.run(
            ["make", "bench"],
            cwd=DOC.parent.parent,
            env={
                **os.environ,
                "BENCH_DURATION": "1s",
                "BENCH_ROUNDS": "2",
                "BENCH_DOWNLOAD_MIB": "32",
                "BENCH_FILTER_ROWS": "5000",
                "BENCH_HEALTH_SAMPLES": "100",
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = re.findall(r"authenticated GET, access log (on|off) / bare = (\d+\.\d+)", result.stdout)
    assert [log for log, _ in api] == ["on", "off"], result.stdout
    assert all(float(ratio) > 0 for _, ratio in api)
    assert len(re.findall(r"^round \d$", result.stdout, flags=re.M)) == 2, result.stdout
    assert re.search(r"the access log's CPU cost per request \(medians\): -?\d+\.\d us", result.stdout)
    ratios = re.findall(r"ratio (\d+\.\d+)", result.stdout)
    assert len(ratios) == 4 * 2, result.stdout  # (a), (b) and their ceilings, for both services
    assert all(float(ratio) > 0 for ratio in ratios)
    assert result.stdout.count("(a) 32 MiB download") == 2
    # The ssh -R peer, measured in the same run: HTTP and HTTPS, (a) and (b), both services.
    against_ssh = re.findall(r"Burrow / ssh, (HTTPS?): (\d+\.\d+)", result.stdout)
    assert [over for over, _ in against_ssh] == ["HTTP", "HTTPS"] * 2 * 2, result.stdout
    assert all(float(ratio) > 0 for _, ratio in against_ssh), result.stdout
    assert re.search(r"filter over 5000 rows: \d+ ms", result.stdout), result.stdout
    # bench/cluster.py: relayed through another node against the holder, PostgreSQL against
    # SQLite, --workers 2 against --workers 1.
    cluster = re.findall(r"\(([cde])\) cluster: [^=]+= (\d+\.\d+)", result.stdout)
    assert [item for item, _ in cluster] == ["c", "d", "e"], result.stdout
    assert all(float(ratio) > 0 for _, ratio in cluster), result.stdout
