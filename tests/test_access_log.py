"""The access log: its buffered sink, and the lines a real server writes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Callable, Iterator

import pytest

from burrow.logsink import JsonLineSink
from tests.harness import BurrowServer


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETFL, os.O_NONBLOCK)
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1024 * 1024)
    yield read_end, write_end
    os.close(read_end)
    os.close(write_end)


def drain(fd: int) -> bytes:
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def test_lines_queued_in_one_loop_turn_are_written_together_at_its_end(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    sink = JsonLineSink(write_end)

    async def burst() -> tuple[bytes, bytes]:
        for n in range(100):
            sink.emit({"n": n, "path": "/credentials", "odd": {1, 2} if n == 0 else None})
        during = drain(read_end)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return during, drain(read_end)

    during, after = asyncio.run(burst())
    assert during == b""
    lines = after.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 101
    assert [json.loads(line)["n"] for line in lines[:-1]] == list(range(100))
    assert json.loads(lines[0])["odd"] == "{1, 2}"  # what JSON cannot encode is shown as text


def test_without_a_loop_or_past_the_buffer_limit_lines_are_written_at_once(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    sink = JsonLineSink(write_end)
    sink.emit({"a": 1})
    assert drain(read_end) == b'{"a":1}\n'
    sink.max_buffer = 1000

    async def big() -> bytes:
        for n in range(30):
            sink.emit({"n": n, "pad": "x" * 40})
        return drain(read_end)

    written = asyncio.run(big())
    assert written.endswith(b"\n") and len(written) >= 1000


def _access_lines(log: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "burrow.access"]


def test_the_server_logs_one_line_per_request_without_query_or_headers(
    make_server: Callable[..., BurrowServer],
) -> None:
    server = make_server()
    with server.client() as http:
        for _ in range(20):
            assert http.get("/credentials?limit=1").status_code == 200
        assert http.get("/credentials?secret=hunter2").status_code == 400
        assert http.get("/nowhere").status_code == 404
    server.stop()
    lines = _access_lines(server.log())
    requests = [line for line in lines if line["path"] in ("/credentials", "/nowhere")]
    assert len(requests) == 22
    assert set(requests[0]) == {
        "time",
        "level",
        "logger",
        "message",
        "method",
        "path",
        "status",
        "duration_ms",
        "operation_id",
        "client",
    }
    assert [r["status"] for r in requests] == [200] * 20 + [400, 404]
    assert all(r["method"] == "GET" and r["level"] == "info" and r["message"] == "request" for r in requests)
    assert all(str(r["operation_id"]).startswith("op_") for r in requests)
    assert "hunter2" not in server.log() and server.api_key not in server.log()


def test_no_access_log_writes_none(make_server: Callable[..., BurrowServer]) -> None:
    server = make_server("--no-access-log")
    with server.client() as http:
        assert http.get("/credentials").status_code == 200
    server.stop()
    # The log itself was written (the server's own lines are there), just no access line.
    assert _access_lines(server.log()) == [] and "Finished server process" in server.log()
