"""Unit tests of bridge.delivery.retry: the retry schedule as data, the policy as a pure function."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.delivery.result import SendResult
from bridge.delivery.retry import MAX_RETRY_AFTER_S, RetryPolicy

# database=None: no example database written into the shared tree.
FUZZ = settings(max_examples=300, deadline=None, database=None)


FAIL_500 = SendResult.retry("http_500", "HTTP 500", 0.1, 500)
FAIL_TIMEOUT = SendResult.retry("timeout", "no answer in time", 5.0)


def overload(status: int, retry_after: float | None) -> SendResult:
    return SendResult.retry(f"http_{status}", f"HTTP {status}", 0.05, status, retry_after)


class TestRetryPolicy:
    @pytest.mark.parametrize("seed", [0, 1, 42, 2024])
    @pytest.mark.parametrize("result", [FAIL_500, FAIL_TIMEOUT], ids=["http_500", "timeout"])
    def test_delays_follow_schedule_within_jitter(self, seed: int, result: SendResult) -> None:
        policy = RetryPolicy()
        rng = random.Random(seed)
        tiers = []
        for attempt, base in enumerate(policy.schedule):
            step = policy.next_step(attempt, result, rng)
            assert step.action == "retry"
            assert base * (1 - policy.jitter) <= step.delay_s <= base * (1 + policy.jitter)
            tiers.append(step.tier)
        # Tiers are 1-based and increase by one per attempt.
        assert tiers == list(range(1, len(policy.schedule) + 1))

    def test_same_seed_same_delays(self) -> None:
        policy = RetryPolicy()
        first = [policy.next_step(a, FAIL_500, random.Random(7)).delay_s for a in range(8)]
        second = [policy.next_step(a, FAIL_500, random.Random(7)).delay_s for a in range(8)]
        assert first == second

    def test_jitter_actually_varies(self) -> None:
        policy = RetryPolicy(schedule=(100.0,), jitter=0.2)
        rng = random.Random(3)
        delays = {policy.next_step(0, FAIL_500, rng).delay_s for _ in range(20)}
        assert len(delays) > 1
        assert all(80.0 <= d <= 120.0 for d in delays)

    @pytest.mark.parametrize(
        "schedule",
        [(5.0, 30.0, 120.0), (1.0,), (0.5, 0.25, 10.0, 3600.0), RetryPolicy().schedule],
    )
    def test_zero_jitter_is_exact(self, schedule: tuple[float, ...]) -> None:
        policy = RetryPolicy(schedule=schedule, jitter=0.0)
        rng = random.Random(11)
        for attempt, base in enumerate(schedule):
            step = policy.next_step(attempt, FAIL_500, rng)
            assert (step.action, step.tier, step.delay_s) == ("retry", attempt + 1, base)

    @pytest.mark.parametrize("schedule", [(1.0,), (5.0, 30.0, 120.0), RetryPolicy().schedule])
    def test_dead_after_schedule_exhausted(self, schedule: tuple[float, ...]) -> None:
        """``len(schedule)`` retries at most: attempt index len(schedule) is the last one."""
        policy = RetryPolicy(schedule=schedule, jitter=0.0)
        rng = random.Random(0)
        last_retry = policy.next_step(len(schedule) - 1, FAIL_500, rng)
        assert last_retry.action == "retry"
        assert last_retry.tier == len(schedule)
        step = policy.next_step(len(schedule), FAIL_500, rng)
        assert step.action == "dead"
        total = len(schedule) + 1
        assert f"{total} attempts" in step.reason
        assert "HTTP 500" in step.reason  # the last failure's detail is kept
        # Further past the end is dead too (e.g. a redriven task with a stale attempt count).
        later = policy.next_step(len(schedule) + 5, FAIL_500, rng)
        assert later.action == "dead"
        assert f"{len(schedule) + 6} attempts" in later.reason

    @pytest.mark.parametrize(
        "result",
        [
            SendResult.dead("http_410", "HTTP 410 Gone: the partner retired this endpoint", 0.1, 410),
            SendResult.dead("url_policy", "destination refused: metadata"),
            SendResult.dead("partner_inactive", "partner inactive"),
        ],
        ids=["http_410", "url_policy", "partner_inactive"],
    )
    @pytest.mark.parametrize("attempt", [0, 3])
    def test_dead_result_is_dead_at_once(self, result: SendResult, attempt: int) -> None:
        step = RetryPolicy().next_step(attempt, result, random.Random(0))
        assert step.action == "dead"
        assert "permanent" in step.reason
        assert result.detail in step.reason

    # Policy: schedule (5, 30) with no jitter, floor 5 → exact arithmetic.
    @pytest.mark.parametrize(
        ("status", "retry_after", "attempt", "expected"),
        [
            (429, 100.0, 0, 100.0),          # larger than schedule → that wait
            (503, 100.0, 0, 100.0),
            (429, 100.0, 1, 100.0),
            (503, 7.0, 0, 7.0),
            (429, 1.0, 0, 5.0),              # smaller than the floor → the floor (== base here)
            (429, 0.0, 0, 5.0),
            (429, None, 0, 5.0),             # absent → at least the floor
            (503, None, 0, 5.0),
            (429, 10.0, 1, 30.0),            # schedule larger than Retry-After → schedule
            (429, 10 * MAX_RETRY_AFTER_S, 0, MAX_RETRY_AFTER_S),   # huge → capped
            (503, float("inf"), 1, MAX_RETRY_AFTER_S),
            (500, 100.0, 0, 5.0),            # other codes ignore retry_after
            (404, 10_000.0, 1, 30.0),
            (None, 100.0, 0, 5.0),
        ],
    )
    def test_overload_retry_after(self, status: int | None, retry_after: float | None,
                                  attempt: int, expected: float) -> None:
        policy = RetryPolicy(schedule=(5.0, 30.0), jitter=0.0, overload_floor_s=5.0)
        result = SendResult("retry", status, f"http_{status}", "x", 0.0, retry_after)
        step = policy.next_step(attempt, result, random.Random(0))
        assert step.action == "retry"
        assert step.tier == attempt + 1
        assert step.delay_s == pytest.approx(expected)

    @pytest.mark.parametrize("status", [429, 503])
    @pytest.mark.parametrize("retry_after", [None, 0.0, 0.5, 2.0])
    def test_floor_raises_short_schedule(self, status: int, retry_after: float | None) -> None:
        """Schedule below the floor: 429/503 still wait at least the floor."""
        policy = RetryPolicy(schedule=(0.5, 1.0), jitter=0.1, overload_floor_s=5.0)
        rng = random.Random(5)
        for attempt in range(2):
            step = policy.next_step(attempt, overload(status, retry_after), rng)
            assert step.delay_s == pytest.approx(5.0)
        # A plain 500 is not floored.
        assert policy.next_step(0, FAIL_500, rng).delay_s < 1.0

    def test_huge_retry_after_capped_with_jitter(self) -> None:
        policy = RetryPolicy()
        step = policy.next_step(0, overload(429, 1e12), random.Random(1))
        assert step.delay_s == MAX_RETRY_AFTER_S

    @FUZZ
    @given(
        schedule=st.lists(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
                          min_size=1, max_size=10).map(tuple),
        jitter=st.floats(min_value=0.0, max_value=0.5, allow_nan=False),
        floor=st.floats(min_value=0.0, max_value=1e4, allow_nan=False),
        data=st.data(),
        status=st.sampled_from([None, 400, 404, 429, 500, 502, 503, 504]),
        retry_after=st.none() | st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
        seed=st.integers(min_value=0, max_value=2**32 - 1),
    )
    def test_property_delay_bounds(self, schedule: tuple[float, ...], jitter: float, floor: float,
                                   data: st.DataObject, status: int | None,
                                   retry_after: float | None, seed: int) -> None:
        policy = RetryPolicy(schedule=schedule, jitter=jitter, overload_floor_s=floor)
        attempt = data.draw(st.integers(min_value=0, max_value=len(schedule) + 2), label="attempt")
        result = SendResult("retry", status, "x", "detail", 0.0, retry_after)
        step = policy.next_step(attempt, result, random.Random(seed))
        if attempt >= len(schedule):
            assert step.action == "dead"
            assert f"{attempt + 1} attempts" in step.reason
            return
        assert step.action == "retry"
        assert step.tier == attempt + 1
        assert step.delay_s >= 0.0
        base = schedule[attempt]
        eps = 1e-9 * max(1.0, base)
        in_band = base * (1 - jitter) - eps <= step.delay_s <= base * (1 + jitter) + eps
        if status in (429, 503):
            wanted = min(max(retry_after if retry_after is not None else 0.0, floor),
                         MAX_RETRY_AFTER_S)
            assert step.delay_s >= wanted - eps
            assert in_band or step.delay_s == pytest.approx(wanted)
        else:
            assert in_band
