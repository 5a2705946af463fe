"""The traffic log: one JSON line per HTTP request or TCP/TLS connection on ``burrow.traffic``.

Each line is built once with orjson. Lines are handed to the logger in batches, at most
``FLUSH_DELAY`` seconds after they were recorded (one logging call and one write per batch
rather than per request); the CLI gives this logger a handler that writes its messages as
they are (see ``cli/logs.py``). No headers, query strings or bodies are ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

traffic_log = logging.getLogger("burrow.traffic")
FLUSH_DELAY = 0.2

_lines: list[bytes] = []
_flush_scheduled = False
_second = -1
_second_text = b""


def enabled() -> bool:
    return traffic_log.isEnabledFor(logging.INFO)


# Every log line starts with these keys (cli/logs.py); the time is spliced in before them.
_NO_TIME = b'{"time":null,'
_NO_TIME_LENGTH = len(_NO_TIME)
_HEAD = b'","level":"info","logger":"burrow.traffic","message":"traffic",'


def _new_second(second: int) -> None:
    """The start of each line's time, formatted once a second."""
    global _second, _second_text
    _second = second
    _second_text = time.strftime('{"time":"%Y-%m-%dT%H:%M:%S', time.gmtime(second)).encode()


def record(**fields: Any) -> None:
    if traffic_log.isEnabledFor(logging.INFO):
        record_line({"time": None, **fields})


def record_line(line: dict[str, Any]) -> None:
    """Record ``line``, whose first key is ``"time"`` (filled in here, with ``level``,
    ``logger`` and ``message`` after it): the per-request path builds this one dict and
    nothing else. The caller checks :func:`enabled`."""
    global _flush_scheduled
    line["time"] = None
    body = orjson.dumps(line)
    if body[:_NO_TIME_LENGTH] != _NO_TIME:  # "time" was not the first key
        body = orjson.dumps({"time": None, **line})
    now = time.time()
    if int(now) != _second:
        _new_second(int(now))
    milliseconds = int(now % 1 * 1000)
    _lines.append(b"%b.%03dZ%b%b" % (_second_text, milliseconds, _HEAD, body[_NO_TIME_LENGTH:]))
    if not _flush_scheduled:
        try:
            asyncio.get_running_loop().call_later(FLUSH_DELAY, flush)
        except RuntimeError:  # no event loop: write it now
            flush()
            return
        _flush_scheduled = True


def flush() -> None:
    """Hand the recorded lines to the logger (also called on shutdown)."""
    global _flush_scheduled
    _flush_scheduled = False
    if _lines:
        batch = b"\n".join(_lines).decode()
        _lines.clear()
        traffic_log.info(batch)


LISTENERS = ("http", "https", "tls", "tcp")


class TrafficCounts:
    """What one public listener carried: plain integers, read by the metrics at scrape time."""

    __slots__ = ("bytes_in", "bytes_out", "requests")

    def __init__(self) -> None:
        self.requests = 0  # HTTP(S) requests answered
        self.bytes_in = 0  # from public clients
        self.bytes_out = 0  # to public clients
