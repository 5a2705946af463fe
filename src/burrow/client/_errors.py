"""Errors raised by Burrow's client, carrying ngrok's error body."""

from __future__ import annotations

from typing import Any


class Error(Exception):
    """A failed API call: ``error_code`` (e.g. ``ERR_NGROK_604``), ``http_status_code``,
    ``message``, ``details`` and ``operation_id`` (quote it when asking for help)."""

    def __init__(
        self,
        error_code: str | None,
        message: str,
        http_status_code: int,
        details: dict[str, Any] | None = None,
    ) -> None:
        # The official client's argument order, so code that constructs errors keeps working.
        super().__init__(f"{error_code or 'HTTP ' + str(http_status_code)}: {message}")
        self.error_code = error_code
        self.http_status_code = http_status_code
        self.message = message
        self.details: dict[str, Any] = details or {}

    @property
    def operation_id(self) -> str | None:
        value = self.details.get("operation_id")
        return value if isinstance(value, str) else None


class NotFoundError(Error):
    """The resource does not exist (or belongs to another account): HTTP 404."""
