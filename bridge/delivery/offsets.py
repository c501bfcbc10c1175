"""Commit only settled work: per partition, the next offset to commit is the lowest unsettled one.

Settled = delivered, or written (and acknowledged) to a retry or dead-letter topic. Tasks of one
partition settle out of order (different partners run in parallel), so the commit point is the
lowest offset still pending, or one past the highest seen when none is.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass
class PartitionOffsets:
    pending: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)
    highest: int = -1
    committed: int = -1

    def add(self, offset: int) -> None:
        self.pending.add(offset)
        heapq.heappush(self.heap, offset)
        self.highest = max(self.highest, offset)

    def settle(self, offset: int) -> None:
        self.pending.discard(offset)

    def committable(self) -> int | None:
        """The offset to commit (Kafka's "next to read"), or None if nothing new is settled."""
        while self.heap and self.heap[0] not in self.pending:
            heapq.heappop(self.heap)
        target = self.heap[0] if self.heap else self.highest + 1
        return target if target > self.committed and self.highest >= 0 else None

    def __len__(self) -> int:
        return len(self.pending)
