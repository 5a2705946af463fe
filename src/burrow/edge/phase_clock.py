"""A public HTTP connection's timeouts (pure): what it waits for, since when, and what one
periodic check decides. A request only moves the phase and its start time; nothing
schedules or cancels a timer per request."""

from __future__ import annotations

from burrow.domain.limits import PublicLimits

# What a connection is waiting for.
HEAD_PHASE, BODY_PHASE, IDLE_PHASE, BUSY_PHASE = range(4)
# What the check decides.
WAIT, HANG_UP, ABORT = range(3)


class PhaseClock:
    __slots__ = ("last_activity", "limits", "phase", "since", "tick_every")

    def __init__(self, limits: PublicLimits, now: float) -> None:
        self.limits = limits
        self.phase = HEAD_PHASE
        self.since = now  # the phase's start
        self.last_activity = now  # the client's last bytes
        self.tick_every = max(0.05, min(limits.head_timeout, limits.body_timeout, limits.idle_timeout) / 4)

    def check(self, now: float, holding: bool) -> int:
        """HANG_UP after a head or idle timeout, ABORT after the body timeout (not while
        ``holding`` the client back: its silence is then ours), else WAIT."""
        phase = self.phase
        limits = self.limits
        waited = now - self.since
        if (phase == HEAD_PHASE and waited > limits.head_timeout) or (
            phase == IDLE_PHASE and waited > limits.idle_timeout
        ):
            return HANG_UP
        if phase == BODY_PHASE and not holding and now - self.last_activity > limits.body_timeout:
            return ABORT
        return WAIT
