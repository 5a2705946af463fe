"""Rate limits: how many events a key may count in a window, and the state that counts them.

:class:`RateLimiter` is the state: counters per (rate, key). :class:`MemoryRateLimiter`
keeps them in this process as sliding-window counters (rates are parsed by ``limits``); a
server sharing limits between processes would implement the same two methods on Redis
or PostgreSQL (``limits`` itself has Redis, Memcached and MongoDB storages).
:class:`Throttle` is the policy both the API and the edge apply (docs/api.md, "Rate limits").
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import limits

from burrow.domain import errors

OFF = ("off", "0", "none", "")


@dataclass(frozen=True)
class Rate:
    """At most ``amount`` events per ``interval``, e.g. ``Rate.parse("600/minute")``."""

    item: limits.RateLimitItem

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``N/second|minute|hour|day`` (or ``N per 5 minutes``); None for ``off``."""
        if text.strip().lower() in OFF:
            return None
        try:
            item = limits.parse(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a rate like 600/minute, or off") from None
        if item.amount < 1:
            raise ValueError(f"{text!r}: the amount must be at least 1")
        return cls(item)

    def shared_by(self, processes: int) -> Rate:
        """This rate for each of ``processes`` that count apart (``--workers``): together
        they never admit more than the rate (each admits at least one event)."""
        item = self.item
        return Rate(type(item)(max(1, item.amount // processes), item.multiples, item.namespace))

    # Read on every request: computed once.
    @functools.cached_property
    def amount(self) -> int:
        return int(self.item.amount)

    @functools.cached_property
    def seconds(self) -> float:
        """The window's length."""
        return float(self.item.get_expiry())

    @property
    def interval(self) -> str:
        multiples = self.item.multiples
        unit = self.item.GRANULARITY.name
        return unit if multiples == 1 else f"{multiples} {unit}s"

    def __str__(self) -> str:
        return f"{self.amount}/{self.interval}"


class RateLimiter(Protocol):
    """Counters of events per key; whatever holds them (memory today, a shared store later)."""

    def hit(self, rate: Rate, key: str) -> float:
        """Count one event; 0 if it was within ``rate``, else the seconds until one would be."""
        ...

    def exhausted(self, rate: Rate, key: str) -> bool:
        """Whether another event would exceed ``rate``, without counting one."""
        ...


class MemoryRateLimiter:
    """Rolling windows (as ngrok's "120 requests per rolling minute") in this process's memory.

    A sliding-window counter, as ``limits``' own ``SlidingWindowCounterRateLimiter``: per key,
    the count of the current fixed window and of the one before; the rolling window's count is
    the current one plus the part of the previous one it still overlaps (at a boundary right
    after a burst, the burst still counts in full). Each hit is O(1) in time and memory.
    ``limits``' in-memory storage is not used because it keeps one timestamp per event for
    moving windows (19 µs a hit at a high limit) and wakes a thread every 10 ms to sweep every
    key; here nothing runs between hits, and keys idle for two windows are dropped by a sweep
    on a hit, at most once a minute.
    """

    SWEEP_EVERY = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # (window seconds, key) -> [window index, count in it, count in the window before]
        self._windows: dict[tuple[float, str], list[int]] = {}
        self._next_sweep = clock() + self.SWEEP_EVERY

    def _counts(self, seconds: float, key: str, now: float) -> tuple[list[int], float]:
        """The key's window state brought to ``now``, and how far into the window ``now`` is (0-1)."""
        index = int(now // seconds)
        state = self._windows.get((seconds, key))
        if state is None or state[0] < index - 1:
            state = [index, 0, 0]
        elif state[0] == index - 1:
            state = [index, 0, state[1]]
        return state, now / seconds - index

    def hit(self, rate: Rate, key: str) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        seconds = rate.seconds
        state, into = self._counts(seconds, key, now)
        _, current, previous = state
        if previous * (1 - into) + current + 1 <= rate.amount:
            state[1] = current + 1
            self._windows[(seconds, key)] = state
            return 0.0
        if current + 1 <= rate.amount:  # later in this window, once enough of the previous one has slid out
            wait = (1 - (rate.amount - current - 1) / previous - into) * seconds
        else:  # in the next window, once enough of this one has slid out
            wait = (1 - into + max(0.0, 1 - (rate.amount - 1) / current)) * seconds
        return max(wait, 0.001)

    def exhausted(self, rate: Rate, key: str) -> bool:
        (_, current, previous), into = self._counts(rate.seconds, key, self._clock())
        return previous * (1 - into) + current + 1 > rate.amount

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        stale = [held for held, state in self._windows.items() if state[0] < int(now // held[0]) - 1]
        for held in stale:
            del self._windows[held]

    def __len__(self) -> int:
        """Keys held (what the sweep bounds)."""
        return len(self._windows)


def retry_seconds(wait: float) -> int:
    """The ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


def _rate(text: str) -> Rate:
    rate = Rate.parse(text)
    assert rate is not None
    return rate


# Defaults: far above what a CI suite does with one key (docs/api.md, "Rate limits").
API_KEY_RATE = _rate("6000/minute")
API_ADDRESS_RATE = _rate("12000/minute")
AUTH_FAILURE_RATE = _rate("60/minute")
SESSION_START_RATE = _rate("60/minute")
# While an address has no failed authentication left, tokens not recognised from a recent
# success are still checked, but at this pace: valid keys get through, guesses crawl.
THROTTLED_CHECK_RATE = _rate("1/second")


@dataclass(frozen=True)
class Rates:
    """The configured limits; None turns one off."""

    api_key: Rate | None = API_KEY_RATE
    api_address: Rate | None = API_ADDRESS_RATE
    auth_failures: Rate | None = AUTH_FAILURE_RATE
    session_starts: Rate | None = SESSION_START_RATE
    throttled_checks: Rate | None = THROTTLED_CHECK_RATE


class Throttle:
    """Burrow's rate-limit policy, over a :class:`RateLimiter`.

    Each check raises a :class:`~burrow.domain.errors.BurrowError` with status 429 and a
    ``retry_after`` (seconds) when the limit is reached.
    """

    def __init__(self, rates: Rates | None = None, limiter: RateLimiter | None = None) -> None:
        self.rates = rates or Rates()
        self.limiter: RateLimiter = limiter or MemoryRateLimiter()

    def _hit(self, rate: Rate | None, key: str, error: errors.ErrorKind, **values: object) -> None:
        if rate is None:
            return
        wait = self.limiter.hit(rate, key)
        if wait:
            retry = retry_seconds(wait)
            raise errors.rate_limited(
                error(max=rate.amount, interval=rate.interval, retry=retry, **values), retry
            )

    def api_request(self, address: str) -> None:
        """Every API request, counted per client address before anything else."""
        self._hit(self.rates.api_address, f"address:{address}", errors.ADDRESS_RATE_LIMITED)

    def api_key(self, key_id: str) -> None:
        """Every authenticated API request, counted per API key."""
        self._hit(self.rates.api_key, f"key:{key_id}", errors.RATE_LIMITED)

    def before_check(self, address: str) -> None:
        """Before a token is verified: refused at a crawl once the address failed too often."""
        rate = self.rates.auth_failures
        if rate is None or not self.limiter.exhausted(rate, f"failures:{address}"):
            return
        checks = self.rates.throttled_checks
        wait = self.limiter.hit(checks, f"checks:{address}") if checks else 60.0
        if wait:
            retry = retry_seconds(wait)
            error = errors.AUTH_THROTTLED(max=rate.amount, interval=rate.interval, retry=retry)
            raise errors.rate_limited(error, retry)

    def failed(self, address: str) -> None:
        """A token from ``address`` failed to authenticate (an API key or an authtoken)."""
        if self.rates.auth_failures is not None:
            self.limiter.hit(self.rates.auth_failures, f"failures:{address}")

    def session_start(self, credential_id: str) -> None:
        """An agent session is starting with this credential."""
        self._hit(
            self.rates.session_starts,
            f"sessions:{credential_id}",
            errors.SESSIONS_RATE_LIMITED,
            id=credential_id,
        )
