"""An expensive filter is cut off at its time budget, and never queues another account's list."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e  # a real burrow serve, so that two clients can be in flight at once

# Each of these scans every row's 4 KiB of metadata twenty times in SQLite's instr (the
# database answers `contains` itself): seconds over a few thousand rows.
EXPENSIVE = " || ".join(f'obj.metadata.contains("{"a" * 170}{n}")' for n in range(20))


def test_an_expensive_filter_is_cut_off_and_other_accounts_do_not_wait(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server("--no-edge", "--no-access-log")
    other = server.new_account("other@example.com")
    with server.client() as http:
        for _ in range(4000):
            assert http.post("/credentials", json={"metadata": "a" * 4096}).status_code == 201
    answers: list[tuple[int, str, float]] = []

    def expensive() -> None:
        with server.client() as http:
            started = time.monotonic()
            response = http.get("/credentials", params={"filter": EXPENSIVE})
            answers.append(
                (response.status_code, response.json().get("error_code", ""), time.monotonic() - started)
            )

    attackers = [threading.Thread(target=expensive) for _ in range(3)]
    for thread in attackers:
        thread.start()
    time.sleep(0.3)
    with server.client(other) as http:
        started = time.monotonic()
        response = http.get("/credentials", params={"filter": 'obj.description == "x"'})
        waited = time.monotonic() - started
    for thread in attackers:
        thread.join(30)
    assert response.status_code == 200, response.text
    assert waited < 0.5, f"another account's filtered list waited {waited:.2f} s"
    assert len(answers) == 3
    assert {(status, code) for status, code, _ in answers} == {(400, "ERR_NGROK_90250")}, answers
    # One at a time for that account, each cut at its budget (1 s) once its turn came.
    took = sorted(seconds for _, _, seconds in answers)
    assert all(seconds < limit for seconds, limit in zip(took, (2.0, 3.0, 4.0), strict=True)), took
