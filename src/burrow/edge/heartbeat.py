"""When the edge gives up on a silent agent: the liveness deadline, without I/O.

An agent sends a heartbeat on its heartbeat stream every interval; a session whose agent
sent none within interval + tolerance is over. The clock is injected, so the policy is
tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_ALLOWANCE = 10.0 + 15.0  # the SDK's interval plus tolerance, until Auth says otherwise


class Liveness:
    def __init__(self, clock: Callable[[], float], allowance: float = DEFAULT_ALLOWANCE) -> None:
        self._clock = clock
        self.allowance = allowance  # seconds of silence allowed
        self._last = clock()

    def beat(self) -> None:
        """A heartbeat arrived (or the session started): the deadline starts again."""
        self._last = self._clock()

    def negotiate(self, interval_ns: int, tolerance_ns: int) -> None:
        """Take the agent's HeartbeatInterval and HeartbeatTolerance (nanoseconds, from
        Auth's ``Extra``; 0 when not sent) if both are sensible; else keep the default."""
        interval = _seconds(interval_ns)
        tolerance = _seconds(tolerance_ns)
        if interval and tolerance:
            self.allowance = interval + tolerance

    @property
    def deadline(self) -> float:
        return self._last + self.allowance

    def expired(self) -> bool:
        return self._clock() > self.deadline


def _seconds(nanoseconds: int) -> float | None:
    if 0 < nanoseconds < 3600e9:
        return float(nanoseconds) / 1e9
    return None
