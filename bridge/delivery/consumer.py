"""Delivery's Kafka plumbing: read the task topics, commit only what dispatch has settled.

``DeliveryConsumer`` is the worker's ``source.TaskSource``: one confluent-kafka consumer over
``bridge.deliveries`` and the retry tiers (configured by ``kafka.config``), assignment and
revocation (with the recent deliveries read back on assignment), offsets per partition
(``offsets.PartitionOffsets``: committed up to the lowest unsettled task), pause and resume of a
partition whose unsettled tasks pile up, and the lag gauges. It neither pushes nor decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import Gauge

from bridge.delivery.delivered import DeliveredIds, read_recent
from bridge.delivery.offsets import PartitionOffsets
from bridge.delivery.records import decode_outcome
from bridge.delivery.source import Partition, Polled, TaskRef, Undecodable
from bridge.events import DeliveryTask
from bridge.kafka.config import client_config
from bridge.settings import Settings
from bridge.topics import retry_tier_name, topic_table

log = logging.getLogger("bridge.delivery")

BACKLOG = Gauge("bridge_retry_backlog", "Tasks waiting in a retry tier (consumer lag + held)", ["tier"])
LAG = Gauge("bridge_consumer_lag", "Delivery consumer lag per topic", ["topic"])

#: Unsettled tasks one partition may hold in memory before it is paused.
MAX_UNSETTLED = 5000
#: Seconds between offset commits (and flow-control checks), and between lag measurements.
COMMIT_EVERY_S = 1.0
LAG_EVERY_S = 5.0


@dataclass
class Assignment:
    """What this worker holds of one partition."""

    offsets: PartitionOffsets
    paused: bool = False


class DeliveryConsumer:
    """The task topics as a ``TaskSource``. ``open()`` first, ``close()`` last (it commits).

    ``make_consumer`` builds the confluent-kafka client from its configuration (a seam for tests).
    """

    def __init__(self, settings: Settings, delivered: DeliveredIds,
                 make_consumer: Callable[[dict[str, Any]], Consumer] = Consumer) -> None:
        self.settings = settings
        self.delivered = delivered
        self._make_consumer = make_consumer
        table = topic_table(settings)
        self.deliveries_topic = table["deliveries"].name
        self.topic_tier = {table[retry_tier_name(tier)].name: tier
                           for tier in range(1, len(settings.retry_schedule) + 1)}
        self.outcomes_topic = table["outcomes"].name
        self.assigned: dict[Partition, Assignment] = {}
        self._revoked: list[Partition] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self._closed = False
        self._last_commit = self._last_lag = 0.0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        # librdkafka's consumer is not thread-safe: every call goes through one thread.
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = await self._call(self._subscribe)

    async def close(self) -> None:
        """Commit what is settled and leave the group; unsettled tasks go to the next owner."""
        if self._closed:
            return
        self._closed = True
        if self._consumer is not None:
            await self._call(self._commit_sync)
            # close() runs the revocation callback (one more commit) on this same thread.
            await self._call(self._consumer.close)
        self._executor.shutdown(wait=False)

    def _subscribe(self) -> Consumer:
        consumer = self._make_consumer(client_config(self.settings, **{
            "group.id": f"{self.settings.app_id}-delivery",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 50,
        }))
        consumer.subscribe([self.deliveries_topic, *self.topic_tier],
                           on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        return consumer

    # --- TaskSource --------------------------------------------------------------------------

    async def poll(self) -> Polled:
        now = time.monotonic()
        if now - self._last_commit >= COMMIT_EVERY_S:
            await self._call(self._commit_sync)
            await self._flow_control()
            self._last_commit = now
        if now - self._last_lag >= LAG_EVERY_S:
            await self._call(self._measure_lag)
            self._last_lag = now
        messages = await self._call(self._next_batch)
        polled = Polled(revoked=self._revoked)
        self._revoked = []
        for message in messages:
            read = self._read(message)
            if read is not None:
                polled.tasks.append(read)
        return polled

    def settled(self, ref: TaskRef) -> None:
        assignment = self.assigned.get(ref.partition_key)
        if assignment is not None:  # else revoked meanwhile: the new owner redoes it
            assignment.offsets.settle(ref.offset)

    # --- reading -----------------------------------------------------------------------------

    def _next_batch(self) -> list[Any]:
        """What is there now, else wait up to 100 ms for the first record.

        ``consume(500, timeout)`` waits the whole timeout unless 500 records are ready, which
        adds up to the timeout to every push at low rates (measured in bench/).
        """
        assert self._consumer is not None
        batch = self._consumer.consume(500, 0)
        return batch if batch else self._consumer.consume(1, 0.1)

    def _read(self, message: Any) -> tuple[TaskRef, DeliveryTask | Undecodable] | None:
        if message.error():
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("delivery consumer: %s", message.error().str())
            return None
        ref = TaskRef(message.topic(), message.partition(), message.offset())
        assignment = self.assigned.get(ref.partition_key)
        if assignment is None:  # fetched before its partition was revoked
            return None
        assignment.offsets.add(ref.offset)
        try:
            return ref, DeliveryTask.decode(message.value())
        except (ValueError, TypeError, KeyError) as exc:
            return ref, Undecodable(message.value(), str(exc))

    # --- assignment --------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned[(tp.topic, tp.partition)] = Assignment(PartitionOffsets())
        known = 0
        if self.settings.redelivery_window_s > 0:
            # What was delivered from these partitions lately (by us before a rebalance, or by
            # a worker that crashed), so that redoing them does not push them again.
            try:
                recent = read_recent(
                    client_config(self.settings, **{"group.id": f"{self.settings.app_id}-delivered"}),
                    self.outcomes_topic, (tp.partition for tp in partitions),
                    time.time() - self.settings.redelivery_window_s, decode_outcome)
            except Exception as exc:  # noqa: BLE001 - without it we only redeliver more
                log.warning("could not read recent outcomes (%s); duplicates are possible", exc)
                recent = []
            for known_key, at in recent:
                self.delivered.add(known_key, at)
            known = len(recent)
        log.info("delivery assigned %d partitions (%d recent deliveries known)", len(partitions), known)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(), on the consumer thread: commit what is settled, then forget.
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._commit_sync(keys)
        for key in keys:
            self.assigned.pop(key, None)
        self._revoked.extend(keys)
        log.info("delivery revoked %d partitions", len(partitions))

    # --- commits, flow control, lag ------------------------------------------------------------

    def _commit_sync(self, keys: list[Partition] | None = None) -> None:
        assert self._consumer is not None
        offsets = []
        for key in keys if keys is not None else list(self.assigned):
            assignment = self.assigned.get(key)
            if assignment is None:
                continue
            target = assignment.offsets.committable()
            if target is not None:
                offsets.append((key, target, TopicPartition(key[0], key[1], target)))
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[o[2] for o in offsets], asynchronous=False)
        except Exception as exc:  # KafkaException: e.g. rebalance in progress; retried next tick
            log.warning("offset commit failed (will retry): %s", exc)
            return
        for key, target, _ in offsets:
            if key in self.assigned:
                self.assigned[key].offsets.committed = target

    async def _flow_control(self) -> None:
        """Pause a partition whose unsettled tasks pile up; resume it when they drain."""
        assert self._consumer is not None
        for key, assignment in list(self.assigned.items()):
            tp = [TopicPartition(key[0], key[1])]
            if not assignment.paused and len(assignment.offsets) > MAX_UNSETTLED:
                await self._call(self._consumer.pause, tp)
                assignment.paused = True
            elif assignment.paused and len(assignment.offsets) < MAX_UNSETTLED // 2:
                await self._call(self._consumer.resume, tp)
                assignment.paused = False

    def _measure_lag(self) -> None:
        assert self._consumer is not None
        per_topic: dict[str, int] = {}
        for (topic, partition), assignment in list(self.assigned.items()):
            try:
                # Cached: the high watermark of the last fetch response. Asking the broker
                # (cached=False) cost one round trip per partition on the consumer thread, 54
                # of them every 5 s with 8 retry tiers, and stalled consumption each time.
                _, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                              cached=True)
            except Exception:  # noqa: BLE001 - a metric, not worth failing the loop
                continue
            if high < 0:  # nothing fetched from this partition yet
                continue
            done = assignment.offsets.committed if assignment.offsets.committed >= 0 else 0
            per_topic[topic] = per_topic.get(topic, 0) + max(0, high - done)
        for topic, lag in per_topic.items():
            LAG.labels(topic).set(lag)
            if topic in self.topic_tier:
                BACKLOG.labels(str(self.topic_tier[topic])).set(lag)
