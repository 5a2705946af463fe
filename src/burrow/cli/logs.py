"""Structured logs: one JSON object per line on stderr, every line of every logger (ours,
uvicorn's, alembic's, the access and traffic logs) starting with the same four keys:
``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and ``message``; fields of
the line's own follow."""

from __future__ import annotations

import json
import logging
import sys

from burrow.logsink import timestamp


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _Verbatim(logging.Formatter):
    """The traffic log's lines are JSON already (edge/traffic.py)."""

    def format(self, record: logging.LogRecord) -> str:
        return str(record.msg)


def configure(level: str, access_log: bool, traffic_log: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("burrow.access").setLevel(logging.INFO if access_log else logging.WARNING)
    traffic = logging.getLogger("burrow.traffic")
    traffic_handler = logging.StreamHandler(sys.stderr)
    traffic_handler.setFormatter(_Verbatim())
    traffic.handlers[:] = [traffic_handler]
    traffic.propagate = False
    traffic.setLevel(logging.INFO if traffic_log else logging.WARNING)
    # uvicorn's own access log prints query strings; ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs each request at INFO: the dashboard's calls to the API in process, which the
    # access log does not show either (they never reach a socket).
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
