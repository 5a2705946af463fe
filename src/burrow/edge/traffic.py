"""The traffic log: one JSON line per HTTP request or TCP/TLS connection on ``burrow.traffic``.

The line is built once with orjson and handed to the logger as its message; the CLI gives
this logger a handler that writes the message as is (see ``cli/logs.py``). No headers,
query strings or bodies are ever logged.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

traffic_log = logging.getLogger("burrow.traffic")


def enabled() -> bool:
    return traffic_log.isEnabledFor(logging.INFO)


def record(**fields: Any) -> None:
    if traffic_log.isEnabledFor(logging.INFO):
        now = time.time()
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"}
        line.update(fields)
        traffic_log.info(orjson.dumps(line).decode())
