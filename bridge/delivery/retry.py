"""The retry schedule is data; the policy is a pure function of (attempt, result, rng)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from bridge.delivery.result import SendResult

#: Longest wait a Retry-After header can impose (a misbehaving partner cannot park a task forever).
MAX_RETRY_AFTER_S = 24 * 3600.0


@dataclass(frozen=True)
class NextStep:
    """Where a task goes after a failed attempt."""

    action: Literal["retry", "dead"]
    #: Retry tier (1-based) when retrying.
    tier: int = 0
    delay_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """``schedule[i]`` is the wait before retry ``i + 1``; ``len(schedule)`` retries at most."""

    schedule: tuple[float, ...] = (5, 30, 120, 600, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
    jitter: float = 0.2
    #: Least wait after 429/503 whatever Retry-After says.
    overload_floor_s: float = 5.0

    def next_step(self, attempt: int, result: SendResult, rng: random.Random) -> NextStep:
        """After attempt number ``attempt`` (0 = the first) failed with ``result``."""
        if result.kind == "dead":
            return NextStep("dead", reason=f"permanent failure: {result.detail}")
        retry = attempt + 1
        if retry > len(self.schedule):
            return NextStep("dead", reason=f"gave up after {attempt + 1} attempts: {result.detail}")
        base = self.schedule[retry - 1]
        delay = base * (1 + rng.uniform(-self.jitter, self.jitter))
        if result.status_code in (429, 503):
            asked = result.retry_after_s if result.retry_after_s is not None else 0.0
            delay = max(delay, min(max(asked, self.overload_floor_s), MAX_RETRY_AFTER_S))
        return NextStep("retry", tier=retry, delay_s=delay)
