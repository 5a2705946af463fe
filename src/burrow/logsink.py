"""A cheap log for hot paths (the API's access log): records queued, written in batches.

Going through :mod:`logging` costs a record, a formatter and a ``write`` system call per
line: about 80 µs, more than the request being logged. Even building each JSON line as
its request ends (a dict, a timestamp, orjson, a buffer) cost the API 9 µs a request in
process and about 20 in a live server, a third of Burrow's own work on a cached GET
(bench/api.py). A :class:`BatchedLog` has the request path queue a tuple of what its line
shows; the lines are rendered together, in one tight loop, and written in one system
call at most :attr:`BatchedLog.flush_delay` seconds after the first of them was queued
(at once past :attr:`BatchedLog.max_records`, when no event loop runs, and at exit).
nginx's ``access_log ... buffer= flush=`` makes the same trade. Lines are whole: every
write ends on a newline, so they interleave cleanly with other writers of the same file.
What a killed process had not yet written is lost: at most ``flush_delay`` seconds of lines.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

R = TypeVar("R")

_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def timestamp(seconds: float | None = None) -> str:
    """``seconds`` (default: now) as every log line shows time: RFC 3339, UTC (``Z``), milliseconds.

    The date and time of day are formatted once per second; datetime's formatting would
    cost more than the rest of an access-log line.
    """
    whole, milli = divmod(int((time.time() if seconds is None else seconds) * 1000), 1000)
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{milli:03d}Z"


class BatchedLog(Generic[R]):
    """Records from one thread (an event loop's), rendered by ``render`` into text lines,
    each ending with a newline, and written to the file descriptor ``fd`` in batches."""

    max_records = 256  # rendering a batch holds the event loop: about 1 ms for 256 lines
    flush_delay = 0.2  # seconds; the traffic log's batches wait as long (edge/traffic.py)

    def __init__(self, render: Callable[[list[R]], str], fd: int = 2) -> None:
        self.render = render
        self.fd = fd
        self._queue: list[R] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on
        atexit.register(self.flush)

    def add(self, record: R) -> None:
        """Queue ``record``; it must not change until written (a tuple, times included)."""
        queue = self._queue
        queue.append(record)
        if len(queue) >= self.max_records:
            self.flush()
        elif self._flush_on is None or self._flush_on.is_closed():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()  # no loop in this thread: write at once
            else:
                self._flush_on = loop
                loop.call_later(self.flush_delay, self.flush)

    def flush(self) -> None:
        """Write every line queued so far."""
        self._flush_on = None
        queue, self._queue = self._queue, []
        if not queue:
            return
        view = memoryview(self.render(queue).encode())
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BlockingIOError:
            pass  # a non-blocking descriptor that is full: these lines are dropped, not the server
        except OSError:
            pass  # stderr closed (e.g. at exit): nowhere left to log to
