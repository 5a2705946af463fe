"""Throughput and latency of Burrow's API against a bare Starlette app, in one run.

Not a test: run ``make bench`` (or ``.venv/bin/python bench/api.py``). It starts a real
``burrow serve`` (one process, access log off) and, on the same ASGI server with the same
settings, a bare Starlette app returning a JSON object of the same shape, then drives each
with wrk at 32 concurrent connections (installing Debian's wrk if it is missing) and
prints requests/s, p50 and p99 latency, and the ratios against the bare app.

Target (issue 2): authenticated GET /credentials/{id} >= 0.5x the bare app.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import textwrap
import urllib.request
from pathlib import Path

from common import BIN, free_port, run_wrk, start_burrow, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DURATION = os.environ.get("BENCH_DURATION", "10s")

BARE_APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    CREDENTIAL = {
        "id": "cr_00DfGQMwoxDxSQg0xzPH2R2eoD0",
        "uri": "http://127.0.0.1/credentials/cr_00DfGQMwoxDxSQg0xzPH2R2eoD0",
        "created_at": "2026-11-22T11:36:43Z", "description": "bench", "metadata": "",
        "token": None, "acl": ["bind:foo.example.com"], "owner_id": "usr_00DfGQKivZijnhAVX99ewmHamcl",
    }

    async def get(request):
        return JSONResponse(CREDENTIAL)

    app = Starlette(routes=[Route("/credentials/{id}", get)])
    """
)

POST_SCRIPT = textwrap.dedent(
    """
    wrk.method = "POST"
    wrk.body = '{"description":"bench","metadata":"","acl":["bind:*.example.com"]}'
    wrk.headers["Content-Type"] = "application/json"
    """
)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="burrow-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "post.lua").write_text(POST_SCRIPT)
        bare_port, burrow_port = free_port(), free_port()
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    "bare_app:app",
                    "--port",
                    str(bare_port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--no-server-header",
                ],
                cwd=work,
            )
        )
        # The API alone: an edge would take the default ports, clashing with a `make serve`.
        token, server = start_burrow(work / "data", burrow_port, "--no-edge")
        processes.append(server)
        bare = f"http://127.0.0.1:{bare_port}"
        burrow = f"http://127.0.0.1:{burrow_port}"
        wait_for_port(bare_port)
        wait_for_port(burrow_port)
        headers = {"Authorization": f"Bearer {token}", "Ngrok-Version": "2"}
        request = urllib.request.Request(
            f"{burrow}/credentials",
            method="POST",
            headers={**headers, "Content-Type": "application/json"},
            data=json.dumps({"description": "bench", "acl": ["bind:foo.example.com"]}).encode(),
        )
        credential_id = json.load(urllib.request.urlopen(request))["id"]

        results = {
            "bare Starlette GET": run_wrk(f"{bare}/credentials/{credential_id}", DURATION),
            "Burrow GET /credentials/{id}": run_wrk(
                f"{burrow}/credentials/{credential_id}", DURATION, headers
            ),
            "Burrow POST /credentials": run_wrk(
                f"{burrow}/credentials", DURATION, headers, str(work / "post.lua")
            ),
        }
        baseline = results["bare Starlette GET"]["rps"]
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"Python {platform.python_version()}; wrk -t1 -c32 -d{DURATION}"
        )
        print(f"{'':32} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'x bare':>7}")
        for name, figures in results.items():
            print(
                f"{name:32} {figures['rps']:10.0f} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f} "
                f"{figures['rps'] / baseline:7.2f}"
            )
        ratio = results["Burrow GET /credentials/{id}"]["rps"] / baseline
        verdict = "met" if ratio >= 0.5 else "NOT met"
        print(f"authenticated GET / bare = {ratio:.2f} (target >= 0.5: {verdict})")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
