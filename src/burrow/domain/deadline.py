"""When a budgeted piece of work must stop: the end of its time budget, or at once when it
is abandoned (its client went away). One object read by the thread doing the work (the
database's progress handler, the Python filter's loop) and set by the event loop."""

from __future__ import annotations

import math
import time


class Deadline:
    """A point in ``time.monotonic()``: none until :meth:`start`, the past once abandoned."""

    __slots__ = ("abandoned", "at")

    def __init__(self, seconds: float | None = None) -> None:
        self.at = math.inf
        self.abandoned = False
        if seconds is not None:
            self.start(seconds)

    def start(self, seconds: float) -> None:
        """The budget runs from now (an abandoned deadline stays passed)."""
        if not self.abandoned:
            self.at = time.monotonic() + seconds

    def abandon(self) -> None:
        """Nobody waits for the work any more: it stops at its next check."""
        self.abandoned = True
        self.at = -math.inf

    def left(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return time.monotonic() > self.at
