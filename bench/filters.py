"""Filtered lists on a large account, and what they cost everyone else, in one run.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/filters.py``). It starts a real
``burrow serve``, fills its account with ``BENCH_FILTER_ROWS`` credentials (default
100,000) through ``burrow admin seed``, then measures:

- the latency of filters that match nothing: one the database answers by index (``obj.id
  in [800 ids]``), one it answers by a scan (``obj.description == ...``), one left to Python
  (``size(obj.acl) > 5``, which the row budget refuses on a large account);
- ``/healthz`` latency (p50, p99) alone, then while four clients send the scanning filter
  back to back.

Targets (issue 11): a filter that matches nothing answers within 200 ms over 100,000
credentials; ``/healthz`` p99 stays under 20 ms while four such requests run.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from statistics import median, quantiles

import httpx
from common import BIN, free_port, start_burrow, wait_for_port

ROWS = int(os.environ.get("BENCH_FILTER_ROWS", "100000"))
HEALTH_SAMPLES = int(os.environ.get("BENCH_HEALTH_SAMPLES", "400"))
# 800 literals fit the 4096-character limit on expressions only when short.
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MISSING_IDS = ",".join(f'"{DIGITS[index // 36]}{DIGITS[index % 36]}"' for index in range(800))
FILTERS = {
    "id in [800 ids] (SQL, index)": f"obj.id in [{MISSING_IDS}]",
    'description == "none" (SQL, scan)': 'obj.description == "none"',
    "size(acl) > 5 (Python, budget)": "size(obj.acl) > 5",
}
SCAN = FILTERS['description == "none" (SQL, scan)']


def timed_list(client: httpx.Client, expression: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get("/credentials", params={"filter": expression})
    return (time.perf_counter() - started) * 1000, response.status_code


def health_latencies(base: str, samples: int) -> list[float]:
    with httpx.Client(base_url=base) as client:
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.002)
        return latencies


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def p99(values: list[float]) -> float:
    return quantiles(values, n=100)[98]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-filters-"))
    server = None
    try:
        port = free_port()
        # The API alone: the edge's default ports may be taken, and the edge is not measured here.
        token, server = start_burrow(work / "data", port, "--no-edge", log=work / "serve.log")
        started = time.perf_counter()
        seed = [BIN / "burrow", "admin", "seed", "--data-dir", work / "data"]
        subprocess.run(
            [*seed, "--account", "bench@localhost", "--credentials", str(ROWS)],
            check=True,
            capture_output=True,
        )
        seeded = time.perf_counter() - started
        wait_for_port(port, server)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}", "Ngrok-Version": "2"}
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; {ROWS} credentials seeded in {seeded:.1f} s"
        )
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            print(f"{'filter matching nothing':40} {'median ms':>10} {'max ms':>8}  status")
            for name, expression in FILTERS.items():
                runs = [timed_list(client, expression) for _ in range(5)]
                times = [elapsed for elapsed, _ in runs]
                statuses = sorted({status for _, status in runs})
                print(f"{name:40} {median(times):10.1f} {max(times):8.1f}  {statuses}")
            scan_ms = median(timed_list(client, SCAN)[0] for _ in range(5))

        quiet = health_latencies(base, HEALTH_SAMPLES)
        stop = threading.Event()
        sent = [0]

        def hammer() -> None:
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                while not stop.is_set():
                    client.get("/credentials", params={"filter": SCAN})
                    sent[0] += 1

        hammers = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in hammers:
            thread.start()
        time.sleep(0.2)
        loaded = health_latencies(base, HEALTH_SAMPLES)
        stop.set()
        for thread in hammers:
            thread.join()
        print(f"{'/healthz':40} {'p50 ms':>10} {'p99 ms':>8}")
        print(f"{'alone':40} {median(quiet):10.2f} {p99(quiet):8.2f}")
        loaded_p99 = p99(loaded)
        print(f"{'with 4 clients filtering':40} {median(loaded):10.2f} {loaded_p99:8.2f}  ({sent[0]} lists)")
        print(
            f"filter over {ROWS} rows: {scan_ms:.0f} ms (target <= 200: {verdict(scan_ms <= 200)}); "
            f"/healthz p99 under load: {loaded_p99:.1f} ms (target < 20: {verdict(loaded_p99 < 20)})"
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
