"""When a partner's waiting pushes spill to the first retry tier.

Spilling keeps a slow partner from holding a partition (its tasks wait in a retry topic, not in
memory), but a spilled task waits at least the first retry delay. Spilling on a count alone made
a healthy partner's bursts (routing commits its tasks a batch at a time) wait 5 s in tier 1.
So a task spills only when it would wait longer in memory than in tier 1, judged from how fast
the partner has been answering (before a round of answers, as many as it has slots, only the
hard cap applies: a fresh worker's first burst spilled and re-spilled in a loop); a hard cap
bounds memory whatever the rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: Beyond this multiple of the backlog setting, tasks spill whatever the partner's pace.
HARD_CAP_FACTOR = 10


@dataclass
class DrainRate:
    """A partner's recent completions per second (decays while the partner stops answering).

    Counted in tasks, the unit of the backlog it is compared with: a push of a batching partner
    (``maxBatch`` > 1) completes all the tasks it carried. Measured from when the oldest push
    in the window *started*, and only once ``min_pushes`` have answered: a partner with 16 slots
    answers in waves, and two answers of the first wave timed against each other read as a
    fraction of its pace (a backlog of 50-event pushes spilled to tier 1 on that in s1 (d)).
    """

    #: (started, tasks completed) of the latest pushes.
    finished: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=128))
    _tasks: int = 0

    def record(self, now: float, tasks: int = 1, started: float | None = None) -> None:
        """A push that started at ``started`` (default ``now``) answered at ``now``."""
        if len(self.finished) == self.finished.maxlen:
            self._tasks -= self.finished[0][1]
        self.finished.append((now if started is None else started, tasks))
        self._tasks += tasks

    def per_second(self, now: float, min_pushes: int = 2) -> float | None:
        if len(self.finished) < max(2, min(min_pushes, self.finished.maxlen or 2)):
            return None
        span = now - self.finished[0][0]
        return self._tasks / span if span > 0 else None


def should_spill(waiting: int, rate: float | None, backlog: int, tier1_delay_s: float,
                 from_retry_tier: bool = False) -> bool:
    """Park a new task in tier 1 only if it would wait in memory longer than there.

    A task read back from a retry tier has been parked once already: parking it again would only
    churn the tier (and, after a crash, duplicate it), so only the hard cap applies to it.
    """
    if waiting < backlog:
        return False
    if waiting >= backlog * HARD_CAP_FACTOR:
        return True
    if from_retry_tier:
        return False
    if rate is None:  # no answer yet (a fresh worker's first burst): wait for the pace
        return False
    return waiting / rate > tier1_delay_s
