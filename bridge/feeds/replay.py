"""Replay one partner from a point in the log.

Reads ``bridge.events`` from a time (offsets looked up per partition) or from explicit offsets,
applies that partner's *current* subscriptions and filters with the live path's pure ``route()``,
and enqueues its tasks on ``bridge.deliveries`` marked ``trigger="replay"`` with the live path's
delivery ids, so the partner can drop what it already has. Other partners are never touched.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.errors import InvalidInput, NotFound
from bridge.events import DeliveryTask, EventRecord
from bridge.kafka.producer import AsyncProducer
from bridge.kafka.reader import TopicReader
from bridge.registry.models import Partner
from bridge.registry.view import RegistryView
from bridge.routing.matching import route
from bridge.settings import Settings
from bridge.topics import topic_table


@dataclass(frozen=True)
class ReplayRequest:
    partner_id: str
    from_time: float | None = None
    #: Explicit start offsets per partition (instead of a time).
    from_offsets: dict[int, int] | None = None
    to_time: float | None = None
    event_types: frozenset[int] | None = None
    dry_run: bool = False
    #: Tasks per second; None = half the partner's in-flight limit × 10/s.
    rate: float | None = None


@dataclass
class ReplayPlan:
    """Per partition, the offsets [start, end) to read."""

    ranges: dict[int, tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(end - start for start, end in self.ranges.values())


@dataclass
class ReplayProgress:
    id: str
    partner_id: str
    dry_run: bool
    total: int
    scanned: int = 0
    enqueued: int = 0
    by_event_type: Counter[int] = field(default_factory=Counter)
    state: str = "running"  # running | done | cancelled | failed
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "partnerId": self.partner_id, "dryRun": self.dry_run,
            "state": self.state, "error": self.error, "total": self.total,
            "scanned": self.scanned, "enqueued": self.enqueued,
            "byEventType": {str(k): v for k, v in sorted(self.by_event_type.items())},
            "startedAt": self.started_at, "finishedAt": self.finished_at,
        }


def plan(settings: Settings, request: ReplayRequest) -> ReplayPlan:
    """Offsets to read for ``request``, or a clear error (retention, empty range)."""
    topic = topic_table(settings)["events"].name
    with TopicReader.of(settings, topic, "replay") as reader:
        partitions = reader.partitions()
        marks = reader.watermarks(partitions)
        if request.from_offsets is not None:
            unknown = sorted(set(request.from_offsets) - set(partitions))
            if unknown:
                raise InvalidInput(f"{topic} has no partitions {unknown} (it has 0..{len(partitions) - 1})",
                                   "from_offsets")
            starts = {p: request.from_offsets.get(p, marks[p][1]) for p in partitions}
            for p, offset in starts.items():
                low, high = marks[p]
                if offset < low:
                    raise InvalidInput(
                        f"partition {p} starts at offset {low} (older events were removed by the "
                        f"topic's retention); {offset} is no longer in the log", "from_offsets")
                starts[p] = min(offset, high)
        else:
            if request.from_time is None:
                raise InvalidInput("give a start: from_time or from_offsets", "from_time")
            starts = _offsets_at(reader, partitions, request.from_time, marks)
            _check_retention(reader, marks, request.from_time)
        ends = ({p: marks[p][1] for p in partitions} if request.to_time is None
                else _offsets_at(reader, partitions, request.to_time, marks))
    ranges = {p: (starts[p], ends[p]) for p in partitions if ends[p] > starts[p]}
    if not ranges:
        raise InvalidInput("nothing to replay: the log has no events in that range", "range")
    return ReplayPlan(ranges)


def _offsets_at(reader: TopicReader, partitions: list[int], at: float,
                marks: dict[int, tuple[int, int]]) -> dict[int, int]:
    # None: no record at or after that time in this partition: start at its end.
    return {p: marks[p][1] if offset is None else offset
            for p, offset in reader.offsets_at(at, partitions).items()}


def _check_retention(reader: TopicReader, marks: dict[int, tuple[int, int]], from_time: float) -> None:
    """Refuse a start older than the log's first kept event where retention removed events.

    Deleted records leave no timestamps behind, so a start between the last deleted and the
    first kept event is refused too (conservatively): the message says where the log starts.
    """
    for p, (low, high) in marks.items():
        if low == 0 or high == low:
            continue  # nothing was ever removed from this partition
        first = reader.first_timestamp(p, low)
        if first is not None and first > from_time:
            raise InvalidInput(
                f"the log now starts at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(first))}"
                " (older events were removed by retention, BRIDGE_EVENTS_RETENTION_HOURS); "
                "choose a later --from-time", "from_time")


def read(settings: Settings, the_plan: ReplayPlan,
         cancelled: Callable[[], bool]) -> Iterator[tuple[int, int, EventRecord | None]]:
    """(partition, offset, record) of the plan, partition by partition; None if undecodable."""
    topic = topic_table(settings)["events"].name
    with TopicReader.of(settings, topic, "replay") as reader:
        for partition, (start, end) in sorted(the_plan.ranges.items()):
            for message in reader.read({partition: (start, end)}, cancelled=cancelled):
                try:
                    record = EventRecord.decode(message.value())
                except (ValueError, TypeError, KeyError):
                    record = None  # undecodable records were never routed live either
                yield partition, message.offset(), record


def partner_tasks(view: RegistryView, partner: Partner, record: EventRecord,
                  statuses: Collection[int], now: float) -> list[DeliveryTask]:
    """The tasks the live path would make for ``record`` and this one partner, as subscribed now."""
    subs = [s for s in view.by_event_type(record.event_type) if s.partner_id == partner.id]
    return route(record, subs, {partner.id: partner}, statuses, now)


async def run(settings: Settings, view: RegistryView, producer: AsyncProducer, request: ReplayRequest,
              progress: ReplayProgress, the_plan: ReplayPlan,
              cancelled: Callable[[], bool] = lambda: False,
              done_up_to: Callable[[int, int], None] = lambda partition, offset: None) -> ReplayProgress:
    """Scan the plan and enqueue (or count, for a dry run) the partner's tasks.

    ``done_up_to(partition, offset)`` is called once every record before ``offset`` of that
    partition has been handled (its tasks acknowledged by Kafka): where a resumed run starts.
    """
    partner = view.partner(request.partner_id)
    if partner is None:
        raise NotFound(f"no partner {request.partner_id!r}")
    rate = request.rate or max(1.0, partner.delivery.max_in_flight / 2 * 10)
    deliveries = topic_table(settings)["deliveries"].name
    statuses: Collection[int] = view.setting("push_statuses", settings.push_statuses)
    first_sent: float | None = None
    queue: asyncio.Queue[tuple[int, int, EventRecord | None] | None] = asyncio.Queue(maxsize=1000)
    loop = asyncio.get_running_loop()
    stop_reading = False

    def produce_records() -> None:
        try:
            for item in read(settings, the_plan, lambda: stop_reading or cancelled()):
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    reader = loop.run_in_executor(None, produce_records)
    try:
        while True:
            item = await queue.get()
            if item is None:
                break
            if cancelled():
                progress.state = "cancelled"
                break
            partition, offset, record = item
            progress.scanned += 1
            if (record is None
                    or (request.to_time is not None and record.ingest_ts > request.to_time)
                    or (request.event_types is not None and record.event_type not in request.event_types)):
                done_up_to(partition, offset + 1)
                continue
            for task in partner_tasks(view, partner, record, statuses, time.time()):
                progress.by_event_type[task.event_type] += 1
                if request.dry_run:
                    continue
                await producer.send(deliveries, replace(task, trigger="replay").encode(),
                                    key=task.partner_id.encode())
                progress.enqueued += 1
                # Pace to the rate so live traffic keeps its share of the partner's slots. The
                # clock starts at the first task: a slow start of the reader (a loaded broker)
                # must not turn into a burst of everything the pace would have allowed by then.
                if first_sent is None:
                    first_sent = time.monotonic()
                ahead = (progress.enqueued - 1) / rate - (time.monotonic() - first_sent)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            done_up_to(partition, offset + 1)
        if progress.state == "running":
            progress.state = "done"
    except Exception as exc:
        progress.state, progress.error = "failed", str(exc)
        raise
    finally:
        stop_reading = True
        while not reader.done():  # let the reader finish its last put, then collect it
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.05)
        await reader
        progress.finished_at = time.time()
    return progress
