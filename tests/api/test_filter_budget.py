"""An expensive filter is cut off at its time budget, and never queues another account's list."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.harness import BurrowServer

pytestmark = pytest.mark.e2e  # a real burrow serve, so that two clients can be in flight at once

# Each of these scans every row's 4 KiB of metadata twenty times in SQLite's instr (the
# database answers `contains` itself): seconds over a few thousand rows.
EXPENSIVE = " || ".join(f'obj.metadata.contains("{"a" * 170}{n}")' for n in range(20))


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BurrowServer]:
    """A server whose first account has 4,000 credentials with 4 KiB of metadata each."""
    server = BurrowServer(tmp_path_factory.mktemp("budget") / "data").start("--no-edge", "--no-access-log")
    with server.client() as http:
        for _ in range(4000):
            assert http.post("/credentials", json={"metadata": "a" * 4096}).status_code == 201
    yield server
    server.stop()


def test_an_expensive_filter_is_cut_off_and_other_accounts_do_not_wait(crowded: BurrowServer) -> None:
    server = crowded
    other = server.new_account("other@example.com")
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


def test_a_filtered_list_whose_client_left_is_not_run_on(crowded: BurrowServer) -> None:
    """Three clients ask for the expensive list and hang up while it is another's turn: they
    leave the queue (and a list under way stops), so the account's next list is not held
    behind work nobody waits for (it used to wait about a second for each)."""
    host, port = crowded.base_url.rsplit("//", 1)[1].split(":")
    request = (
        f"GET /credentials?filter={urllib.parse.quote(EXPENSIVE)} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {crowded.api_key}\r\nNgrok-Version: 2\r\n\r\n"
    ).encode()

    def ask(hang_up_after: float | None) -> None:
        with socket.create_connection((host, int(port))) as connection:
            connection.sendall(request)
            if hang_up_after is None:
                connection.recv(100)  # the first stays for its answer
            else:
                time.sleep(hang_up_after)

    first = threading.Thread(target=ask, args=(None,))
    first.start()
    time.sleep(0.2)
    leavers = [threading.Thread(target=ask, args=(0.2,)) for _ in range(3)]
    for thread in leavers:
        thread.start()
    for thread in leavers:
        thread.join()
    with crowded.client() as http:
        started = time.monotonic()
        response = http.get("/credentials", params={"filter": EXPENSIVE})
        waited = time.monotonic() - started
    first.join(10)
    assert response.json()["error_code"] == "ERR_NGROK_90250"
    # The first's remaining turn (under 1 s) and its own 1 s; not three more seconds.
    assert waited < 2.6, f"the next list waited {waited:.2f} s behind lists whose clients had left"
