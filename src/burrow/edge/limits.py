"""Limits and timeouts of the public listeners, and the connection counts they are checked against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublicLimits:
    """Defaults fit for the internet; docs/edge.md says why each one is what it is."""

    max_head_bytes: int = 64 * 1024  # request line and header fields (431 past it)
    max_headers: int = 100  # header fields in one request (431 past it)
    tls_handshake_timeout: float = 10.0  # HTTPS handshake
    head_timeout: float = 15.0  # from a connection's start, or a request's first byte, to its whole head
    body_timeout: float = 30.0  # longest silence within a request body
    idle_timeout: float = 60.0  # keep-alive: a connection between requests
    max_connections: int = 10_000  # open at once on one listener
    max_connections_per_client: int = 64  # open at once from one client address, all listeners together


class TrafficCounts:
    """What one public listener carried: plain integers, read by the metrics at scrape time."""

    __slots__ = ("accepted", "bytes_in", "bytes_out", "refused", "requests")

    def __init__(self) -> None:
        self.accepted = 0  # connections
        self.refused = 0  # connections over a cap
        self.requests = 0  # HTTP(S) requests answered
        self.bytes_in = 0  # from public clients
        self.bytes_out = 0  # to public clients


LISTENERS = ("http", "https", "tls", "tcp")


class ConnectionCounts:
    """Open public connections per listener and per client address."""

    def __init__(self, limits: PublicLimits) -> None:
        self.limits = limits
        self._per_listener: dict[str, int] = {}
        self._per_client: dict[str, int] = {}
        self.traffic = {listener: TrafficCounts() for listener in LISTENERS}

    def open(self, listener: str) -> int:
        return self._per_listener.get(listener, 0)

    def admit(self, listener: str, client_ip: str) -> bool:
        """Count one more connection, unless a cap is reached (then count nothing)."""
        if (
            self._per_listener.get(listener, 0) >= self.limits.max_connections
            or self._per_client.get(client_ip, 0) >= self.limits.max_connections_per_client
        ):
            self.traffic[listener].refused += 1
            return False
        self.traffic[listener].accepted += 1
        self._per_listener[listener] = self._per_listener.get(listener, 0) + 1
        self._per_client[client_ip] = self._per_client.get(client_ip, 0) + 1
        return True

    def release(self, listener: str, client_ip: str) -> None:
        for table, key in ((self._per_listener, listener), (self._per_client, client_ip)):
            left = table.get(key, 0) - 1
            if left > 0:
                table[key] = left
            else:
                table.pop(key, None)
