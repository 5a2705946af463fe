"""bench/proxy_path.py, the in-process A/B bench of the HTTP proxy's path, still runs.

It is not part of `make bench` (it is a tool for comparing two checkouts), so nothing else
would notice when the edge's interfaces move under it. Only that it runs and reports.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_proxy_path_bench_runs_and_reports_cpu_per_request() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "proxy_path.py"), "200", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = re.findall(r"^(\d+\.\d) us/request$", result.stdout, flags=re.M)
    assert len(figures) == 2 and all(float(figure) > 0 for figure in figures), result.stdout


def test_its_policy_mode_runs_both_arms() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "proxy_path.py"), "200", "1", "policy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^\d+\.\d / \d+\.\d us/request, the policy adds -?\d+\.\d us$", result.stdout, re.M), (
        result.stdout
    )
