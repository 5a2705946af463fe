"""A cheap sink for hot JSON-lines logs (the API's access log; the edge's traffic log).

Going through :mod:`logging` costs a record, a formatter and a ``write`` system call per
line: about 80 µs, more than the request being logged. A :class:`JsonLineSink` encodes
each entry with orjson into a buffer and writes the buffer once per event-loop iteration
(or at once when it passes :attr:`JsonLineSink.max_buffer`, when no loop runs, and at
exit), so a busy server makes one system call for many lines. Lines are whole: every
write ends on a newline, so they interleave cleanly with other writers of the same file.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

_LINE = orjson.OPT_APPEND_NEWLINE


def _fallback(value: object) -> str:
    return str(value)


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def timestamp(seconds: float | None = None) -> str:
    """``seconds`` (default: now) as the logs show time: ISO 8601, UTC, milliseconds.

    The date and time of day are formatted once per second; datetime's formatting would
    cost more than the rest of an access-log line.
    """
    whole, micro = divmod(round((time.time() if seconds is None else seconds) * 1e6), 1_000_000)
    if _second[0] != whole:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))]
    return f"{_second[1]}.{micro // 1000:03d}+00:00"


class JsonLineSink:
    """Buffered JSON lines to a file descriptor (default 2, stderr)."""

    max_buffer = 256 * 1024

    def __init__(self, fd: int = 2) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self._lock = threading.Lock()  # emit may come from a thread; flushes come from the loop
        self._flush_scheduled = False
        atexit.register(self.flush)

    def emit(self, entry: Mapping[str, Any]) -> None:
        """Queue one line: ``entry`` as a JSON object (values orjson cannot encode as ``str``)."""
        line = orjson.dumps(entry, default=_fallback, option=_LINE)
        with self._lock:
            self._buffer += line
            if len(self._buffer) < self.max_buffer:
                if self._flush_scheduled:
                    return
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass  # no loop in this thread: write at once
                else:
                    self._flush_scheduled = True
                    loop.call_soon(self.flush)
                    return
        self.flush()

    def flush(self) -> None:
        """Write everything queued so far."""
        with self._lock:
            self._flush_scheduled = False
            pending, self._buffer = self._buffer, bytearray()
        view = memoryview(pending)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except BlockingIOError:
            pass  # a non-blocking descriptor that is full: these lines are dropped, not the server
        except OSError:
            pass  # stderr closed (e.g. at exit): nowhere left to log to


STDERR = JsonLineSink(2)  # shared, so that lines from every hot log leave in one write
