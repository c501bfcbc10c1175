"""When waiting pushes spill to the first retry tier (bridge.delivery.backlog)."""

from __future__ import annotations

import pytest

from bridge.delivery.backlog import HARD_CAP_FACTOR, DrainRate, should_spill


@pytest.mark.parametrize(("waiting", "rate", "spill"), [
    (199, None, False),        # under the backlog: never
    (1999, None, False),       # no answer yet (a fresh worker's burst): wait for the pace
    (2000, None, True),
    (500, 1000.0, False),      # a burst for a fast partner: 0.5 s of waiting beats 5 s in tier 1
    (500, 50.0, True),         # 10 s at this pace: tier 1 is sooner
    (200, 3.2, True),          # a partner timing out on every push (16 slots / 5 s)
    (200 * HARD_CAP_FACTOR, 1e6, True),  # the memory bound holds whatever the pace
])
def test_should_spill(waiting: int, rate: float | None, spill: bool) -> None:
    assert should_spill(waiting, rate, backlog=200, tier1_delay_s=5.0) is spill


def test_drain_rate_decays_when_the_partner_stops_answering() -> None:
    drain = DrainRate()
    assert drain.per_second(0.0) is None
    for i in range(100):
        drain.record(i / 100)  # 100 answers in one second
    fast = drain.per_second(1.0)
    assert fast is not None and 95 < fast < 105
    later = drain.per_second(60.0)  # nothing since: the pace falls, so spilling starts
    assert later is not None and later < 2
    assert should_spill(300, later, backlog=200, tier1_delay_s=5.0)
    assert not should_spill(300, fast, backlog=200, tier1_delay_s=5.0)


def test_a_task_back_from_a_retry_tier_is_not_parked_again_below_the_cap() -> None:
    assert should_spill(500, 50.0, backlog=200, tier1_delay_s=5.0)
    assert not should_spill(500, 50.0, backlog=200, tier1_delay_s=5.0, from_retry_tier=True)
    assert should_spill(2000, 50.0, backlog=200, tier1_delay_s=5.0, from_retry_tier=True)


def test_drain_rate_counts_the_tasks_a_batched_push_carried() -> None:
    # The backlog it is compared with counts tasks: 10 pushes of 50 tasks in a second drain
    # 500 tasks a second, and 1,200 waiting tasks wait 2.4 s, not the 120 s of 10 pushes/s.
    drain = DrainRate()
    for i in range(10):
        drain.record(i / 10, tasks=50)
    rate = drain.per_second(1.0)
    assert rate is not None and 450 < rate < 550
    assert not should_spill(1200, rate, backlog=200, tier1_delay_s=5.0)
    for i in range(200):  # the oldest pushes leave the window with their tasks
        drain.record(2.0 + i / 100)
    later = drain.per_second(4.0)
    assert later is not None and 60 < later < 140


def test_drain_rate_waits_for_a_round_of_answers_and_times_pushes_from_their_start() -> None:
    # 16 slots of 50-event pushes taking 0.3 s each: 2,667 tasks/s. The first two answers of
    # the wave, timed against each other, read as ~100 tasks in a few ms or (a moment later)
    # ~100 tasks in 0.5 s; timed from the pushes' start, after the round, they read the pace.
    drain = DrainRate()
    drain.record(0.30, tasks=50, started=0.0)
    drain.record(0.31, tasks=50, started=0.01)
    assert drain.per_second(0.8, min_pushes=16) is None
    for i in range(14):
        drain.record(0.31 + i / 1000, tasks=50, started=0.01 + i / 1000)
    rate = drain.per_second(0.33, min_pushes=16)
    assert rate is not None and 2000 < rate < 3000
    assert not should_spill(1200, rate, backlog=200, tier1_delay_s=5.0)
    # A partner timing out on every push (16 slots, 5 s): its first round reads its pace.
    dead = DrainRate()
    for i in range(16):
        dead.record(5.0 + i / 1000, started=i / 1000)
    pace = dead.per_second(5.02, min_pushes=16)
    assert pace is not None and 3.0 < pace < 3.4
    assert should_spill(200, pace, backlog=200, tier1_delay_s=5.0)
