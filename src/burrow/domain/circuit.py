"""A circuit breaker with ngrok's semantics, on an injected clock.

ngrok's circuit breaker (docs: traffic-policy action ``circuit-breaker``, the ``CircuitBreaker``
endpoint option): answers from the upstream are counted in a rolling window of 10 s split
into 10 buckets; once the window holds at least ``volume_threshold`` (10) answers and the
share of errors (5xx, or no answer at all) reaches ``error_threshold``, the circuit opens and
requests are refused with 503 for ``tripped_duration`` (10 s). Then one request is let
through as a probe: a good answer closes the circuit (with an empty window), a bad one (or
none within another tripped duration) keeps it open for another tripped duration.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_SECONDS = 10.0
BUCKETS = 10
VOLUME_THRESHOLD = 10
TRIPPED_SECONDS = 10.0


def is_error(status: int) -> bool:
    """A 5xx answer, or none (0): what counts against the upstream."""
    return status == 0 or status >= 500


class CircuitBreaker:
    """Opens after too many 5xx answers; the proxy asks ``allows`` and tells ``record``."""

    def __init__(
        self,
        error_threshold: float = 0.5,
        *,
        volume_threshold: int = VOLUME_THRESHOLD,
        window_seconds: float = WINDOW_SECONDS,
        buckets: int = BUCKETS,
        tripped_seconds: float = TRIPPED_SECONDS,
    ) -> None:
        if not 0.0 <= error_threshold <= 1.0:
            raise ValueError("error_threshold must be between 0.0 and 1.0")
        self.error_threshold = error_threshold
        self.volume_threshold = volume_threshold
        self.bucket_seconds = window_seconds / buckets
        self.buckets = buckets
        self.tripped_seconds = tripped_seconds
        # (bucket number, answers, errors), oldest first; bucket number = floor(now / width).
        self._window: deque[list[int]] = deque()
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allows(self, now: float) -> bool:
        """May a request go to the agent at monotonic time ``now``?"""
        if self._open_until is None:
            return True
        if now < self._open_until:
            return False
        # Tripped duration over: let one probe through; the rest wait for its answer.
        self._probing = True
        self._open_until = now + self.tripped_seconds
        return True

    def record(self, status: int, now: float) -> None:
        """The status the agent answered (0 when it answered nothing)."""
        if self._probing:
            self._probing = False
            if is_error(status):
                self._open_until = now + self.tripped_seconds
            else:
                self._open_until = None
                self._window.clear()
            return
        if self._open_until is not None:
            return  # an answer to a request let through before the circuit opened
        bucket = math.floor(now / self.bucket_seconds)
        while self._window and self._window[0][0] <= bucket - self.buckets:
            self._window.popleft()
        if not self._window or self._window[-1][0] != bucket:
            self._window.append([bucket, 0, 0])
        self._window[-1][1] += 1
        self._window[-1][2] += is_error(status)
        answers = sum(entry[1] for entry in self._window)
        errors = sum(entry[2] for entry in self._window)
        if answers >= self.volume_threshold and errors and errors >= self.error_threshold * answers:
            self._open_until = now + self.tripped_seconds
            self._window.clear()
