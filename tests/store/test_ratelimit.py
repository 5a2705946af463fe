"""The in-memory rolling windows, on a clock the test moves (no sleeping)."""

from __future__ import annotations

import pytest

from burrow.store.ratelimit import MemoryRateLimiter, Rate


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rate(text: str) -> Rate:
    parsed = Rate.parse(text)
    assert parsed is not None
    return parsed


def test_the_limit_counts_per_key_and_refuses_the_next_event() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    ten = rate("10/minute")
    assert all(limiter.hit(ten, "a") == 0 for _ in range(10))
    assert not limiter.exhausted(ten, "b")
    assert limiter.exhausted(ten, "a")
    assert limiter.hit(ten, "a") > 0
    assert limiter.hit(ten, "b") == 0  # another key has its own budget


def test_a_burst_still_counts_across_a_minute_boundary() -> None:
    """What a fixed window gets wrong: ten at the end of one clock minute, ten more at the
    start of the next. A rolling minute still holds the first ten."""
    clock = Clock(600.0 + 59.0)  # one second before a minute boundary
    limiter = MemoryRateLimiter(clock)
    ten = rate("10/minute")
    for _ in range(5):
        assert limiter.hit(ten, "a") == 0
    clock.now += 30  # the other five half a minute later
    for _ in range(5):
        assert limiter.hit(ten, "a") == 0
    clock.now += 2  # past the boundary, within a minute of every one of them
    assert limiter.hit(ten, "a") > 0
    clock.now += 28.5  # the first five have aged out; the others have not
    allowed = sum(limiter.hit(ten, "a") == 0 for _ in range(10))
    assert allowed == 5


def test_the_wait_is_when_the_oldest_event_ages_out() -> None:
    clock = Clock(1200.0)
    limiter = MemoryRateLimiter(clock)
    two = rate("2/minute")
    limiter.hit(two, "a")
    clock.now += 10
    limiter.hit(two, "a")
    clock.now += 5
    wait = limiter.hit(two, "a")
    assert wait == pytest.approx(45.0)  # the first was 15 s ago: it leaves the minute in 45 s
    clock.now += wait - 0.5
    assert limiter.hit(two, "a") > 0
    clock.now += 1
    assert limiter.hit(two, "a") == 0


def test_a_refused_event_is_not_counted() -> None:
    clock = Clock(1200.0)
    limiter = MemoryRateLimiter(clock)
    one = rate("1/minute")
    limiter.hit(one, "a")
    for _ in range(100):
        limiter.hit(one, "a")
    clock.now += 61  # a minute later nothing is left, however many were refused
    assert limiter.hit(one, "a") == 0


def test_idle_keys_are_swept() -> None:
    clock = Clock(1200.0)
    limiter = MemoryRateLimiter(clock)
    per_second = rate("5/second")
    for address in range(1000):
        limiter.hit(per_second, f"address:{address}")
    assert len(limiter) == 1000
    clock.now += MemoryRateLimiter.SWEEP_EVERY
    limiter.hit(per_second, "address:new")
    assert len(limiter) == 1
