"""The two ways HTTP/1.1 goes wrong, as in h11: the peer broke the protocol, or we did."""

from __future__ import annotations


class RemoteProtocolError(Exception):
    """The peer sent something this core refuses to frame. ``status`` is the answer a
    server gives for it (400, 431, 501, 505); on the agent side every fault is a 502."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LocalProtocolError(Exception):
    """The caller used the parser out of turn (a bug here, never the peer's doing)."""
