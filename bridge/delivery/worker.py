"""The delivery loop: consume tasks, push them, settle each, commit only what is settled.

Why a consumer of its own rather than a stream framework's agent: isolation needs tasks of
different partners in one partition to run in parallel, each partner bounded by its own in-flight
limit, with the partition's offset committed only up to its lowest unsettled task. Stream agents
commit in stream order per partition; this loop tracks offsets itself (``offsets.PartitionOffsets``).

Per task: wait for ``not_before`` (retry tiers) → partner's slot → breaker → ``sender`` → outcome →
``retry.next_step`` → write to the next retry tier or the dead-letter topic → settled.
A partner whose backlog is full spills new tasks to the first retry tier, so a slow partner never
holds a partition for others; an ``ordered`` partner gets one task in flight and retries in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from bridge.delivery.backlog import DrainRate, should_spill
from bridge.delivery.breaker import Breakers, destination_of
from bridge.delivery.delivered import DeliveredIds, read_recent, task_key
from bridge.delivery.offsets import PartitionOffsets
from bridge.delivery.records import dead_letter, decode_outcome, encode_outcome, outcome
from bridge.delivery.result import SendResult
from bridge.delivery.retry import RetryPolicy
from bridge.delivery.sender import PartnerSender, prepare
from bridge.errors import BridgeError
from bridge.events import DeliveryTask
from bridge.kafka.config import client_config
from bridge.kafka.producer import AsyncProducer
from bridge.registry.models import Partner
from bridge.registry.view import RegistryView
from bridge.settings import Settings
from bridge.topics import retry_tier_name, topic_table

log = logging.getLogger("bridge.delivery")

DELIVERIES = Counter("bridge_deliveries_total", "Delivery attempts by partner and result",
                     ["partner", "result"])
LATENCY = Histogram("bridge_delivery_latency_seconds", "Time to a partner's answer, per attempt",
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
E2E = Histogram("bridge_end_to_end_seconds", "Platform ingest to partner 2xx",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600))
DEAD = Counter("bridge_dead_letters_total", "Tasks written to the dead-letter topic", ["partner"])
BACKLOG = Gauge("bridge_retry_backlog", "Tasks waiting in a retry tier (consumer lag + held)", ["tier"])
LAG = Gauge("bridge_consumer_lag", "Delivery consumer lag per topic", ["topic"])
BREAKER = Gauge("bridge_breaker_open", "1 while a destination's circuit breaker is open", ["destination"])
IN_FLIGHT = Gauge("bridge_in_flight", "Pushes in flight in this worker")

#: Unsettled tasks one partition may hold in memory before it is paused.
MAX_UNSETTLED = 5000


@dataclass
class PartnerSlots:
    limit: int
    sem: asyncio.Semaphore
    waiting: int = 0
    drain: DrainRate = field(default_factory=DrainRate)
    #: Tasks waiting for a slot of a partner that takes several events per push (maxBatch > 1).
    pending: deque[tuple[tuple[str, int], int, DeliveryTask, str]] = field(default_factory=deque)
    #: The ordered partner's tasks; None in it tells its loop that the worker is stopping.
    ordered_queue: asyncio.Queue[tuple[tuple[str, int], int, DeliveryTask] | None] | None = None


@dataclass
class Assignment:
    """What this worker holds of one partition."""

    offsets: PartitionOffsets
    held: deque[tuple[int, DeliveryTask]] = field(default_factory=deque)
    paused: bool = False


class DeliveryWorker:
    def __init__(self, settings: Settings, view: RegistryView, sender: PartnerSender,
                 producer: AsyncProducer, secrets_for: Callable[[Partner], list[str]],
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.view = view
        self.sender = sender
        self.producer = producer
        self.secrets_for = secrets_for
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(tuple(settings.retry_schedule), settings.retry_jitter,
                                  settings.retry_after_floor_s)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown_s)
        table = topic_table(settings)
        self.deliveries_topic = table["deliveries"].name
        self.tier_topics = {tier: table[retry_tier_name(tier)].name
                            for tier in range(1, len(settings.retry_schedule) + 1)}
        self.topic_tier = {name: tier for tier, name in self.tier_topics.items()}
        self.dlq_topic = table["deliveries.dlq"].name
        self.outcomes_topic = table["outcomes"].name
        self.state_topic = table["delivery.state"].name
        self.assigned: dict[tuple[str, int], Assignment] = {}
        self.delivered = DeliveredIds(settings.redelivery_window_s)
        #: Keys of tasks dispatched and not finished yet (unordered partners).
        self.sending: set[str] = set()
        self.partners: dict[str, PartnerSlots] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    # --- Kafka plumbing ----------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        # librdkafka's consumer is not thread-safe: every call goes through one thread.
        assert self._loop is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

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
            for known, at in recent:
                self.delivered.add(known, at)
            known = len(recent)
        log.info("delivery assigned %d partitions (%d recent deliveries known)", len(partitions), known)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(), on the consumer thread: commit what is settled, then forget.
        self._commit_sync([(tp.topic, tp.partition) for tp in partitions])
        for tp in partitions:
            self.assigned.pop((tp.topic, tp.partition), None)
        log.info("delivery revoked %d partitions", len(partitions))

    def _commit_sync(self, keys: list[tuple[str, int]] | None = None) -> None:
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

    def _make_consumer(self) -> Consumer:
        consumer = Consumer(client_config(self.settings, **{
            "group.id": f"{self.settings.app_id}-delivery",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 50,
        }))
        consumer.subscribe([self.deliveries_topic, *self.tier_topics.values()],
                           on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        return consumer

    async def _produce(self, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]]) -> None:
        """Write until Kafka acknowledges: a task is not settled before its successor is durable."""
        delay = 0.5
        while True:
            try:
                await self.producer.send_many(records)
                return
            except BridgeError as exc:
                if not exc.retriable or self._stopping:
                    raise
                log.warning("cannot write delivery records yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.view.wait_ready, 120.0)
        self._consumer = await self._call(self._make_consumer)
        last_commit = last_lag = 0.0
        try:
            while not stop.is_set():
                messages = await self._call(self._next_batch)
                for message in messages:
                    self._handle(message)
                self._release_due()
                now = time.monotonic()
                if now - last_commit >= 1.0:
                    await self._call(self._commit_sync)
                    await self._flow_control()
                    last_commit = now
                if now - last_lag >= 5.0:
                    await self._call(self._measure_lag)
                    last_lag = now
        finally:
            self._stopping = True
            for slots in self.partners.values():
                if slots.ordered_queue is not None:  # wakes an idle ordered loop, so it ends
                    slots.ordered_queue.put_nowait(None)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)
            await self._call(self._commit_sync)
            await self._call(self._consumer.close)
            self._executor.shutdown(wait=False)

    def _next_batch(self) -> list[Any]:
        """What is there now, else wait up to 100 ms for the first record.

        ``consume(500, timeout)`` waits the whole timeout unless 500 records are ready, which
        adds up to the timeout to every push at low rates (measured in bench/).
        """
        assert self._consumer is not None
        batch = self._consumer.consume(500, 0)
        return batch if batch else self._consumer.consume(1, 0.1)

    def _handle(self, message: Any) -> None:
        if message.error():
            if message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("delivery consumer: %s", message.error().str())
            return
        key = (message.topic(), message.partition())
        assignment = self.assigned.get(key)
        if assignment is None:
            return
        assignment.offsets.add(message.offset())
        try:
            task = DeliveryTask.decode(message.value())
        except (ValueError, TypeError, KeyError) as exc:
            log.error("undecodable delivery task at %s[%d]@%d: %s", key[0], key[1], message.offset(), exc)
            self._spawn(self._settle_raw_dead(key, message.offset(), message.value(), str(exc)))
            return
        if task.not_before > time.time() or assignment.held:
            assignment.held.append((message.offset(), task))
        else:
            self._dispatch(key, message.offset(), task)

    def _release_due(self) -> None:
        now = time.time()
        for key, assignment in list(self.assigned.items()):
            while assignment.held and assignment.held[0][1].not_before <= now:
                offset, task = assignment.held.popleft()
                self._dispatch(key, offset, task)

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

    # --- per task ---------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its offset stays unsettled, so the work is redone after a restart; say so loudly.
            log.error("delivery task crashed; its record will be redelivered after a restart",
                      exc_info=task.exception())

    def _slots(self, partner: Partner) -> PartnerSlots:
        limit = 1 if partner.delivery.ordered else partner.delivery.max_in_flight
        slots = self.partners.get(partner.id)
        if slots is None or slots.limit != limit:
            slots = PartnerSlots(limit, asyncio.Semaphore(limit))
            self.partners[partner.id] = slots
        return slots

    def _settle(self, key: tuple[str, int], offset: int) -> None:
        assignment = self.assigned.get(key)
        if assignment is not None:  # else revoked meanwhile: the new owner redoes it
            assignment.offsets.settle(offset)

    def _dispatch(self, key: tuple[str, int], offset: int, task: DeliveryTask) -> None:
        known = task_key(task)
        if task.trigger == "live" and (known in self.delivered or known in self.sending):
            # Redone after a crash or rebalance, or a parked copy of one being pushed now: it
            # went (or is going) out already; a failure of that push schedules its own retry.
            DELIVERIES.labels(task.partner_id, "already_delivered").inc()
            self._settle(key, offset)
            return
        partner = self.view.partner(task.partner_id)
        if partner is None or partner.state != "active":
            reason = "partner deleted" if partner is None else "partner disabled"
            self._spawn(self._finish(key, offset, task, SendResult.dead("partner_inactive", reason),
                                     dead_reason=reason))
            return
        slots = self._slots(partner)
        if partner.delivery.ordered:
            if slots.ordered_queue is None:
                slots.ordered_queue = asyncio.Queue()
                self._spawn(self._ordered_loop(partner.id, slots.ordered_queue))
            slots.ordered_queue.put_nowait((key, offset, task))
            return
        now = time.time()
        if should_spill(slots.waiting, slots.drain.per_second(now), self.settings.partner_backlog,
                        self.policy.schedule[0], from_retry_tier=key[0] in self.topic_tier):
            self._spawn(self._spill(key, offset, task))
            return
        self.sending.add(known)
        if partner.delivery.max_batch > 1:
            slots.pending.append((key, offset, task, known))
            self._spawn(self._deliver_batch(partner, slots))
            return
        self._spawn(self._deliver(key, offset, task, partner, slots, known))

    async def _deliver_batch(self, partner: Partner, slots: PartnerSlots) -> None:
        """Take a slot, then push what waits for this partner (up to maxBatch events) as one.

        One coroutine per task; whoever gets a slot first takes every compatible task waiting,
        so the ones whose task went with it find nothing and return. Nothing waits to fill a
        batch: an idle partner's task goes alone at once.
        """
        slots.waiting += 1
        try:
            await slots.sem.acquire()
        finally:
            slots.waiting -= 1
        members: list[tuple[tuple[str, int], int, DeliveryTask, str]] = []
        try:
            members = take_batch(slots.pending, partner.delivery.max_batch)
            if not members:
                return
            push = members[0][2] if len(members) == 1 else merge_tasks([m[2] for m in members])
            result = await self._attempt_safely(push, partner)
        finally:
            slots.sem.release()
        try:
            slots.drain.record(time.time())
            key, offset = members[0][0], members[0][1]
            await self._finish(key, offset, push, result,
                               also=[(k, o, t) for k, o, t, _ in members[1:]])
        finally:
            for *_, known in members:
                self.sending.discard(known)

    async def _deliver(self, key: tuple[str, int], offset: int, task: DeliveryTask,
                       partner: Partner, slots: PartnerSlots, known: str) -> None:
        try:
            await self._deliver_in_slot(key, offset, task, partner, slots)
        finally:
            self.sending.discard(known)

    async def _deliver_in_slot(self, key: tuple[str, int], offset: int, task: DeliveryTask,
                               partner: Partner, slots: PartnerSlots) -> None:
        slots.waiting += 1
        try:
            await slots.sem.acquire()
        finally:
            slots.waiting -= 1
        try:
            result = await self._attempt_safely(task, partner)
        finally:
            slots.sem.release()
        slots.drain.record(time.time())
        await self._finish(key, offset, task, result)

    async def _attempt_safely(self, task: DeliveryTask, partner: Partner) -> SendResult:
        """A bug in an attempt must not strand the task unsettled: it becomes a retriable failure."""
        try:
            return await self._attempt(task, partner)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback, then retried
            log.exception("delivery attempt for %s failed unexpectedly", task.delivery_id)
            return SendResult.retry("internal_error", f"{type(exc).__name__}: {exc}", 0.0)

    async def _ordered_loop(self, partner_id: str,
                            queue: asyncio.Queue[tuple[tuple[str, int], int, DeliveryTask] | None]) -> None:
        """One task at a time, in order; a failing task is retried in place, blocking only this partner."""
        while not self._stopping:
            item = await queue.get()
            if item is None:
                return
            key, offset, task = item
            while True:
                partner = self.view.partner(partner_id)
                if partner is None or partner.state != "active":
                    await self._finish(key, offset, task, SendResult.dead("partner_inactive", "partner inactive"),
                                       dead_reason="partner inactive")
                    break
                result = await self._attempt_safely(task, partner)
                if result.kind == "delivered":
                    await self._finish(key, offset, task, result)
                    break
                step = self.policy.next_step(task.attempt, result, self.rng)
                if step.action == "dead":
                    await self._finish(key, offset, task, result)
                    break
                await self._record(task, result, "retry", time.time() + step.delay_s)
                await asyncio.sleep(step.delay_s)
                task = replace(task, attempt=task.attempt + 1, trigger="retry")

    async def _spill(self, key: tuple[str, int], offset: int, task: DeliveryTask) -> None:
        """The partner's backlog is full: park the task in the first retry tier (not an attempt)."""
        parked = replace(task, not_before=time.time() + self.policy.schedule[0])
        await self._produce([(self.tier_topics[1], task.partner_id.encode(), parked.encode(), None)])
        DELIVERIES.labels(task.partner_id, "deferred").inc()
        self._settle(key, offset)

    async def _attempt(self, task: DeliveryTask, partner: Partner) -> SendResult:
        breaker = self.breakers.get(task.event_dest)
        now = time.time()
        if not breaker.allow(now):
            return SendResult.retry("breaker_open", f"circuit open for {destination_of(task.event_dest)}", 0.0)
        signing = self.secrets_for(partner) if partner.delivery.signing else []
        push = prepare(task, partner.delivery.timeout_s, signing)
        IN_FLIGHT.inc()
        try:
            result = await self.sender.send(push, partner.delivery.verify_tls)
        finally:
            IN_FLIGHT.dec()
        LATENCY.observe(result.latency_s)
        if breaker.record(result.kind == "delivered", time.time()):
            await self._publish_breaker(task.event_dest, breaker.state, breaker.failures)
        return result

    async def _publish_breaker(self, url: str, state: str, failures: int) -> None:
        destination = destination_of(url)
        BREAKER.labels(destination).set(1 if state == "open" else 0)
        log.warning("circuit breaker for %s is now %s after %d consecutive failures",
                    destination, state, failures)
        value = json.dumps({"state": state, "failures": failures, "changedAt": time.time()}).encode()
        await self._produce([(self.state_topic, destination.encode(), value, None)])

    async def _record(self, task: DeliveryTask, result: SendResult, kind: str,
                      next_retry_at: float | None) -> None:
        value, headers = encode_outcome(outcome(task, result, kind, time.time(), next_retry_at))
        await self._produce([(self.outcomes_topic, task.partner_id.encode(), value, headers)])

    async def _finish(self, key: tuple[str, int], offset: int, task: DeliveryTask,
                      result: SendResult, dead_reason: str | None = None,
                      also: Sequence[tuple[tuple[str, int], int, DeliveryTask]] = ()) -> None:
        """Act on the result (done / next tier / dead letter), record it, then settle.

        ``also``: the other tasks a batched push carried (``task`` is then their merge); they
        settle with it, and the merged task is what retries or is dead-lettered.
        """
        now = time.time()
        records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
        pkey = task.partner_id.encode()
        if result.kind == "delivered":
            kind, next_at = "delivered", None
            self.delivered.add(task_key(task), now)
            for _, _, member in also:
                self.delivered.add(task_key(member), now)
            if task.ingest_ts:
                E2E.observe(max(0.0, now - task.ingest_ts))
        else:
            step = self.policy.next_step(task.attempt, result, self.rng)
            if dead_reason is not None or step.action == "dead":
                kind, next_at = "dead", None
                reason = dead_reason or step.reason
                records.append((self.dlq_topic, pkey, dead_letter(task, result, reason, now), None))
                DEAD.labels(task.partner_id).inc()
            else:
                kind, next_at = "retry", now + step.delay_s
                successor = replace(task, attempt=task.attempt + 1, trigger="retry", not_before=next_at)
                records.append((self.tier_topics[step.tier], pkey, successor.encode(), None))
            log.warning(
                "send fail partner=%s dest=%s eventIds=%s status=%s error=%s attempt=%d next=%s: %s",
                task.partner_id, task.event_dest, ",".join(task.event_ids), result.status_code,
                result.error, task.attempt + 1,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_at)) if next_at else "dead-letter",
                result.detail)
        value, headers = encode_outcome(outcome(task, result, kind, now, next_at))
        records.append((self.outcomes_topic, pkey, value, headers))
        await self._produce(records)
        DELIVERIES.labels(task.partner_id, kind).inc()
        self._settle(key, offset)
        for member_key, member_offset, _ in also:
            self._settle(member_key, member_offset)

    async def _settle_raw_dead(self, key: tuple[str, int], offset: int, value: bytes, reason: str) -> None:
        record = json.dumps({"undecodable": value.decode(errors="replace"), "reason": reason,
                             "dead_at": time.time()}).encode()
        await self._produce([(self.dlq_topic, None, record, None)])
        self._settle(key, offset)


def _batch_key(task: DeliveryTask) -> tuple[Any, ...]:
    """Tasks whose events can share one push: same destination, attempt and envelope.

    The envelope is compared without ``sendTime`` (each platform push has its own; a batch is a
    push of ours, and carries its first event's).
    """
    params = task.body.get("params") if isinstance(task.body, dict) else None
    envelope = ({k: v for k, v in params.items() if k not in ("events", "sendTime")}
                if isinstance(params, dict) and isinstance(params.get("events"), list) else None)
    return (task.event_dest, task.trigger, task.attempt, task.body.get("method"),
            json.dumps(envelope, sort_keys=True, default=str) if envelope is not None else None)


def take_batch(pending: deque[tuple[tuple[str, int], int, DeliveryTask, str]],
               max_events: int) -> list[tuple[tuple[str, int], int, DeliveryTask, str]]:
    """The first waiting task and the compatible ones right behind it, up to ``max_events``."""
    if not pending:
        return []
    first = pending.popleft()
    batch = [first]
    key = _batch_key(first[2])
    if key[-1] is None:  # not an OnEventNotify with a list of events: goes alone
        return batch
    events = len(first[2].event_ids)
    while pending and events < max_events:
        task = pending[0][2]
        if events + len(task.event_ids) > max_events or _batch_key(task) != key:
            break
        batch.append(pending.popleft())
        events += len(task.event_ids)
    return batch


def merge_tasks(tasks: list[DeliveryTask]) -> DeliveryTask:
    """One task carrying the events of ``tasks`` in one OnEventNotify, with a delivery id of its own.

    The id is derived from the members' ids, so the same batch pushed again keeps it; the
    outcome lists every event id. A failure retries (or dead-letters) the merged task whole.
    """
    first = tasks[0]
    params = dict(first.body["params"])
    params["events"] = [event for task in tasks for event in task.body["params"]["events"]]
    body = {**first.body, "params": params}
    batch_id = hashlib.sha256("\x1f".join(["batch", *(t.delivery_id for t in tasks)]).encode()).hexdigest()[:32]
    ingested = [t.ingest_ts for t in tasks if t.ingest_ts]
    return replace(first, delivery_id=batch_id, event_ids=tuple(e for t in tasks for e in t.event_ids),
                   body=body, created_at=min(t.created_at for t in tasks),
                   ingest_ts=min(ingested) if ingested else 0.0,
                   extra={**first.extra, "batchOf": [t.delivery_id for t in tasks]})
