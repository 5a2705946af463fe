"""Write flow control for asyncio protocols: what pause_writing/resume_writing mean.

A transport calls ``pause_writing`` when its buffer passes the high-water mark and
``resume_writing`` when it drains (and a protocol should call it from ``connection_lost``
too, so nobody waits forever). Writers then either await :meth:`WriteFlow.drained` or,
in callback code, ask to be called back with :meth:`WriteFlow.call_when_drained`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class WriteFlow:
    def __init__(self) -> None:
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self._callbacks: list[Callable[[], None]] = []

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    async def drained(self) -> None:
        """Return once writing may go on."""
        if self.paused:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def call_when_drained(self, callback: Callable[[], None]) -> None:
        if self.paused:
            self._callbacks.append(callback)
        else:
            asyncio.get_running_loop().call_soon(callback)
