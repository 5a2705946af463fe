"""The edge's pure policies: window credit, credit on drain, heartbeat liveness. No sockets,
no sleeps: a fake clock stands in for time."""

from __future__ import annotations

from burrow.edge import muxado_protocol as mux
from burrow.edge.heartbeat import DEFAULT_ALLOWANCE, Liveness


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_receive_credit_refuses_an_overrun_and_keeps_the_window() -> None:
    credit = mux.ReceiveCredit(window=100, batch=10)
    assert credit.take(60) and credit.window == 40
    assert not credit.take(41) and credit.window == 40
    assert credit.take(40) and credit.window == 0


def test_receive_credit_returns_in_batches_or_when_the_window_is_used_up() -> None:
    credit = mux.ReceiveCredit(window=100, batch=10)
    credit.take(50)
    assert credit.consume(4) == 0 and credit.consume(5) == 0  # 9 < a batch
    assert credit.consume(1) == 10 and credit.window == 60
    credit.take(60)
    assert credit.consume(1) == 1  # the peer may send nothing more: credit goes at once
    assert credit.window == 1


def test_drain_credit_is_at_once_when_the_writer_took_everything() -> None:
    credit = mux.DrainCredit()
    assert credit.written(100, writer_buffering=False) == (100, False)
    assert credit.owed == 0 and not credit.draining


def test_drain_credit_waits_for_the_writer_to_drain() -> None:
    credit = mux.DrainCredit()
    assert credit.written(100, writer_buffering=True) == (0, True)  # start one drain
    # While draining, even what the writer took at once waits: credit goes back in order.
    assert credit.written(50, writer_buffering=False) == (0, False)
    assert credit.written(25, writer_buffering=True) == (0, False)  # no second drain
    assert credit.drained() == 175
    assert not credit.draining and credit.written(10, writer_buffering=False) == (10, False)


def test_drain_credit_after_a_failed_writer_owes_nothing_new() -> None:
    credit = mux.DrainCredit()
    credit.written(100, writer_buffering=True)
    credit.failed()
    assert not credit.draining


def test_liveness_expires_after_the_allowance_of_silence() -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    assert liveness.allowance == DEFAULT_ALLOWANCE
    clock.now += DEFAULT_ALLOWANCE
    assert not liveness.expired()  # exactly at the deadline: still alive
    clock.now += 0.001
    assert liveness.expired()
    liveness.beat()
    assert not liveness.expired() and liveness.deadline == clock.now + DEFAULT_ALLOWANCE


def test_liveness_takes_the_agents_interval_and_tolerance() -> None:
    clock = FakeClock()
    liveness = Liveness(clock)
    liveness.negotiate(2_000_000_000, 1_000_000_000)
    assert liveness.allowance == 3.0
    clock.now += 3.5
    assert liveness.expired()


def test_liveness_ignores_nonsense_heartbeat_settings() -> None:
    # (Auth's types are checked when it is parsed: burrow.edge.wire; unsent fields read as 0.)
    for interval, tolerance in (
        (0, 0),
        (2_000_000_000, 0),  # one without the other
        (0, 1_000_000_000),
        (-5, 1_000_000_000),
        (7200 * 10**9, 1_000_000_000),  # two hours
    ):
        liveness = Liveness(FakeClock())
        liveness.negotiate(interval, tolerance)
        assert liveness.allowance == DEFAULT_ALLOWANCE, (interval, tolerance)
