"""The access log: its batched writes, its lines, and the lines a real server writes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Callable, Iterator

import pytest

from burrow.api.app import AccessRecord, access_lines
from burrow.logsink import BatchedLog
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


def _numbered(records: list[tuple[int, str]]) -> str:
    return "".join(json.dumps({"n": n, "path": path}) + "\n" for n, path in records)


def test_lines_are_rendered_and_written_together_once_the_flush_delay_has_passed(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    rendered: list[int] = []

    def render(records: list[tuple[int, str]]) -> str:
        rendered.append(len(records))
        return _numbered(records)

    log = BatchedLog(render, write_end)
    log.flush_delay = 0.05

    async def burst() -> tuple[bytes, bytes, bytes]:
        for n in range(50):
            log.add((n, "/credentials"))
        during = drain(read_end)
        await asyncio.sleep(0.01)  # loop turns pass, and the records wait
        for n in range(50, 100):
            log.add((n, "/credentials"))
        later = drain(read_end)
        await asyncio.sleep(0.1)
        return during, later, drain(read_end)

    during, later, after = asyncio.run(burst())
    assert during == b"" and later == b""
    assert rendered == [100]  # one batch, rendered when written
    lines = after.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 101
    assert [json.loads(line)["n"] for line in lines[:-1]] == list(range(100))


def test_without_a_loop_or_past_the_record_limit_lines_are_written_at_once(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    log = BatchedLog(_numbered, write_end)
    log.add((1, "/a"))
    assert drain(read_end) == b'{"n": 1, "path": "/a"}\n'
    log.max_records = 30

    async def many() -> bytes:
        for n in range(30):
            log.add((n, "/b"))
        return drain(read_end)

    written = asyncio.run(many())
    assert [json.loads(line)["n"] for line in written.splitlines()] == list(range(30))


def test_a_flush_due_on_a_closed_loop_does_not_hold_back_later_lines(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    log = BatchedLog(_numbered, write_end)
    log.flush_delay = 0.02

    async def one(n: int) -> None:
        log.add((n, "/a"))

    asyncio.run(one(1))  # the loop closes before its flush is due
    written = b""

    async def then() -> None:
        nonlocal written
        log.add((2, "/a"))
        await asyncio.sleep(0.1)
        written = drain(read_end)

    asyncio.run(then())
    assert [json.loads(line)["n"] for line in written.splitlines()] == [1, 2]


def test_access_lines_are_json_whatever_the_path_and_with_nothing_unknown() -> None:
    records: list[AccessRecord] = [
        (1764500000.25, "GET", '/a"b\\c/ü\n', 404, 0.0012345, "op_x", ("::1", 5)),
        (1764500000.5, "POST", "/credentials", 201, 2.5, None, None),
    ]
    lines = [json.loads(line) for line in access_lines(records).splitlines()]
    assert lines[0] == {
        "time": "2025-11-30T10:53:20.250Z",
        "level": "info",
        "logger": "burrow.access",
        "message": "request",
        "method": "GET",
        "path": '/a"b\\c/ü\n',
        "status": 404,
        "duration_ms": 1.234,
        "operation_id": "op_x",
        "client": "::1:5",
    }
    assert lines[1]["operation_id"] is None and lines[1]["client"] is None
    assert lines[1]["duration_ms"] == 2500.0


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
