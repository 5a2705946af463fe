"""Rate limits: how many events a key may count in a window, and the state that counts them.

:class:`RateLimiter` is the state: counters per (rate, key). :class:`MemoryRateLimiter`
keeps them in this process as rolling windows (rates are parsed by ``limits``); a
server sharing limits between processes would implement the same two methods on Redis
or PostgreSQL (``limits`` itself has Redis, Memcached and MongoDB storages).
:class:`Throttle` is the policy both the API and the edge apply (docs/api.md, "Rate limits").
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
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

    Per key, the times of the events counted in the last window, oldest first: a hit drops
    those that have aged out and counts itself if fewer than the rate remain, so the count is
    exact and the wait is when the oldest ages out. Each hit is O(1) (amortised), and a key
    holds at most ``amount`` times. ``limits``' in-memory storage is not used for this: its
    moving window inserts each event at the front of a list (O(events in the window), 19 µs a
    hit at a high limit) and it wakes a thread every 10 ms to sweep every key; here nothing
    runs between hits, and keys idle for a whole window are dropped by a sweep on a hit, at
    most once a minute.
    """

    SWEEP_EVERY = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[tuple[float, str], deque[float]] = {}  # (window seconds, key) -> times
        self._next_sweep = clock() + self.SWEEP_EVERY

    def _recent(self, seconds: float, key: str, now: float) -> deque[float]:
        """The times of the key's events within the window ending ``now`` (held from now on)."""
        events = self._events.get((seconds, key))
        if events is None:
            events = self._events[(seconds, key)] = deque()
        return self._aged_out(events, now - seconds)

    @staticmethod
    def _aged_out(events: deque[float], horizon: float) -> deque[float]:
        """``events`` without those at or before ``horizon``."""
        while events and events[0] <= horizon:
            events.popleft()
        return events

    def hit(self, rate: Rate, key: str) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        events = self._recent(rate.seconds, key, now)
        if len(events) < rate.amount:
            events.append(now)
            return 0.0
        return max(events[0] + rate.seconds - now, 0.001)

    def exhausted(self, rate: Rate, key: str) -> bool:
        # A read: a key with no events (most addresses never fail to authenticate) is not held.
        events = self._events.get((rate.seconds, key))
        if events is None:
            return False
        return len(self._aged_out(events, self._clock() - rate.seconds)) >= rate.amount

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_EVERY
        idle = [held for held, events in self._events.items() if not events or events[-1] <= now - held[0]]
        for held in idle:
            del self._events[held]

    def __len__(self) -> int:
        """Keys held (what the sweep bounds)."""
        return len(self._events)


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
