"""Which tasks were delivered lately: so a worker that redoes a partition skips them.

A partition's commit point is its lowest unsettled task, so after a crash or a rebalance the next
owner re-reads tasks that were delivered already (and, for spilled tasks, their copies). Delivery
ids are deterministic, and every delivery writes an outcome to ``bridge.outcomes``, keyed by
partnerId like the task topics and with the same partition count: on assignment the worker reads
the recent outcomes of the same partition numbers and does not push those tasks again. Only for
live tasks: a replay or a redrive is asked for, and re-delivers on purpose.

A task is known by its delivery id *and* its event's ingest time: a platform re-send of the same
report is a new ingest (routed again when correlation lets it through, e.g. after its TTL) and
is pushed, while the same task read twice (a redone offset, a parked copy) is not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cachetools import TLRUCache

from bridge.delivery.records import millis
from bridge.events import DeliveryTask
from bridge.kafka.reader import TopicReader


def instance_key(delivery_id: str, ingested_ms: int | None) -> str:
    return f"{delivery_id}@{ingested_ms or 0}"


def task_key(task: DeliveryTask) -> str:
    """What identifies one routed task (the same for its parked copies and redone reads)."""
    return instance_key(task.delivery_id, millis(task.ingest_ts))


def _epoch_ms(value: Any) -> int | None:
    if value is None:
        return None
    return round(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


class DeliveredIds:
    """Task keys delivered within the last ``window_s`` seconds of their delivery time.

    A ``cachetools.TLRUCache`` whose time-to-use is the delivery time plus the window: keys read
    back from outcomes on assignment carry their outcome's time, not the time they were read,
    so a plain TTL cache (aged from insertion) would keep an outcome read at the end of the
    window for a whole window more. Beyond ``limit`` keys the least recently added goes first.
    """

    def __init__(self, window_s: float, limit: int = 1_000_000) -> None:
        self.window_s = window_s
        self._at: TLRUCache[str, float] = TLRUCache(
            maxsize=limit, ttu=lambda _key, at, _now: at + window_s, timer=time.time)
        # Filled from the consumer thread (assignment) and the event loop (deliveries);
        # cachetools' caches are not thread-safe.
        self._lock = threading.Lock()

    def add(self, key: str, at: float) -> None:
        """``key`` was delivered at ``at`` (epoch seconds); an older time never shortens it."""
        with self._lock:
            known = self._at.get(key)
            self._at[key] = at if known is None else max(at, known)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._at

    def __len__(self) -> int:
        with self._lock:
            self._at.expire()
            return len(self._at)


def read_recent(config: dict[str, Any], topic: str, partitions: Iterable[int], since: float,
                decode: Callable[[bytes], dict[str, Any]], timeout_s: float = 60.0) -> list[tuple[str, float]]:
    """(task key, attempted at) of the ``delivered`` outcomes written since ``since``."""
    numbers = sorted(set(partitions))
    if not numbers:
        return []
    found: list[tuple[str, float]] = []
    with TopicReader(config, topic) as reader:
        # None: nothing written since then in that partition.
        ranges = {p: (first, None) for p, first in reader.offsets_at(since, numbers).items()
                  if first is not None}
        for message in reader.read(ranges, timeout_s=timeout_s):
            try:
                record = decode(message.value())
            except Exception:  # noqa: BLE001 - an unreadable outcome only costs a duplicate
                continue
            if record.get("result") == "delivered":
                at = (_epoch_ms(record["attempted_at"]) or 0) / 1000
                found.append((instance_key(record["delivery_id"], _epoch_ms(record.get("ingested_at"))), at))
    return found
