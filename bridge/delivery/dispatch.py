"""Dispatch and settle: tasks from a source → partner slots → push → outcome → settled.

Per task: wait for ``not_before`` (retry tiers) → partner's slot → breaker → ``sender`` → outcome →
``retry.next_step`` (decided once per attempt) → write to the next retry tier or the dead-letter
topic → ``source.settled``. A partner whose backlog is full spills new tasks to the first retry
tier, so a slow partner never holds a partition for others; an ``ordered`` partner gets one task
in flight and retries in place.

Why not a stream framework's agent: isolation needs tasks of different partners in one partition
to run in parallel, each partner bounded by its own in-flight limit, and a partition committed
only up to its lowest unsettled task; stream agents commit in stream order. No Kafka here: the
source (``consumer.DeliveryConsumer`` in the worker, an in-memory one in tests) tracks offsets
and commits, and every record goes through the injected sink.

Slightly over 400 lines on purpose: slots, spill, push and settle share one partner's state and
the rule that nothing is settled before its records are written. The seams (``source.py``),
batching, backlog, retry and breaker are already modules of their own.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from bridge.delivery.backlog import DrainRate, should_spill
from bridge.delivery.batching import Waiting, merge_tasks, take_batch
from bridge.delivery.breaker import Breakers, destination_of
from bridge.delivery.delivered import DeliveredIds, task_key
from bridge.delivery.records import dead_letter, encode_outcome, outcome
from bridge.delivery.result import SendResult
from bridge.delivery.retry import NextStep, RetryPolicy
from bridge.delivery.sender import PartnerSender, prepare
from bridge.delivery.source import (Partition, Partners, Record, RecordSink, TaskRef, TaskSource,
                                    Undecodable)
from bridge.errors import BridgeError
from bridge.events import DeliveryTask
from bridge.registry.models import Partner
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
BREAKER = Gauge("bridge_breaker_open", "1 while a destination's circuit breaker is open", ["destination"])
IN_FLIGHT = Gauge("bridge_in_flight", "Pushes in flight in this worker")


@functools.lru_cache(maxsize=65536)
def _counted(partner_id: str, result: str) -> Any:
    """``DELIVERIES``' child for one partner and result: ``labels()`` validates and locks on
    every call, once per delivery otherwise."""
    return DELIVERIES.labels(partner_id, result)


@dataclass
class PartnerSlots:
    limit: int
    sem: asyncio.Semaphore
    drain: DrainRate = field(default_factory=DrainRate)
    #: Tasks waiting for a slot (unordered partners).
    pending: deque[Waiting] = field(default_factory=deque)
    #: The partner as last dispatched to: what its drain pushes with.
    partner: Partner | None = None
    #: Whether the drain of ``pending`` runs (one per partner, not one per task).
    draining: bool = False

    @property
    def waiting(self) -> int:
        """Tasks waiting for a slot."""
        return len(self.pending)
    #: The ordered partner's tasks; None in it tells its loop that dispatch is stopping.
    ordered_queue: asyncio.Queue[tuple[TaskRef, DeliveryTask] | None] | None = None


class Dispatcher:
    """Pushes the tasks ``source`` brings and settles each once its records are written."""

    def __init__(self, settings: Settings, partners: Partners, sender: PartnerSender,
                 sink: RecordSink, source: TaskSource, secrets_for: Callable[[Partner], list[str]],
                 delivered: DeliveredIds | None = None, rng: random.Random | None = None,
                 drain_timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.view = partners
        self.sender = sender
        self.sink = sink
        self.source = source
        self.secrets_for = secrets_for
        self.rng = rng or random.Random()
        self.drain_timeout_s = drain_timeout_s
        self.policy = RetryPolicy(tuple(settings.retry_schedule), settings.retry_jitter,
                                  settings.retry_after_floor_s)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown_s)
        table = topic_table(settings)
        self.tier_topics = {tier: table[retry_tier_name(tier)].name
                            for tier in range(1, len(settings.retry_schedule) + 1)}
        self.topic_tier = {name: tier for tier, name in self.tier_topics.items()}
        self.dlq_topic = table["deliveries.dlq"].name
        self.outcomes_topic = table["outcomes"].name
        self.state_topic = table["delivery.state"].name
        #: What was delivered lately (also filled by the source on assignment): not pushed again.
        self.delivered = delivered if delivered is not None else DeliveredIds(settings.redelivery_window_s)
        #: Per partition, tasks waiting for their ``not_before`` (and those read behind them).
        self.held: dict[Partition, deque[tuple[TaskRef, DeliveryTask]]] = {}
        #: Keys of tasks dispatched and not finished yet (unordered partners).
        self.sending: set[str] = set()
        self.partners: dict[str, PartnerSlots] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Tasks to park in the first retry tier, written together at the end of this loop turn.
        self._spilling: list[tuple[TaskRef, DeliveryTask]] = []
        self._stopping = False

    # --- the loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch what the source brings until ``stop`` is set, then drain."""
        try:
            while not stop.is_set():
                polled = await self.source.poll()
                self.forget(polled.revoked)
                for ref, item in polled.tasks:
                    self.accept(ref, item)
                self.release_due()
        finally:
            await self.drain()

    async def drain(self) -> None:
        """Take no new work; give pushes in flight up to ``drain_timeout_s`` to settle.

        What does not finish in time stays unsettled, so the partition's next owner redoes it
        (with the same delivery id); nothing is settled before its records are written.
        """
        self._stopping = True
        self._spill_now()  # spilled this turn: written (and settled) like the pushes in flight
        for slots in self.partners.values():
            if slots.ordered_queue is not None:  # wakes an idle ordered loop, so it ends
                slots.ordered_queue.put_nowait(None)
        # Until every task ends, those started meanwhile included (a partner's drain goes on
        # pushing what waits: a waiting task left unsettled holds its partition's commit point
        # below the settled tasks after it, which the next owner would push again), or the
        # time is up.
        deadline = time.monotonic() + self.drain_timeout_s
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)

    @property
    def draining(self) -> bool:
        """Stopped taking work; pushes in flight may still settle."""
        return self._stopping

    def forget(self, partitions: Sequence[Partition]) -> None:
        """Drop the held tasks of partitions this worker no longer owns."""
        for key in partitions:
            self.held.pop(key, None)

    def accept(self, ref: TaskRef, item: DeliveryTask | Undecodable) -> None:
        """Dispatch a task now, or hold it (with the ones behind it) until its ``not_before``."""
        if isinstance(item, Undecodable):
            log.error("undecodable delivery task at %s[%d]@%d: %s", ref.topic, ref.partition,
                      ref.offset, item.reason)
            self._spawn(self._settle_raw_dead(ref, item))
            return
        held = self.held.get(ref.partition_key)
        if held or item.not_before > time.time():
            self.held.setdefault(ref.partition_key, deque()).append((ref, item))
        else:
            self._dispatch(ref, item)

    def release_due(self) -> None:
        now = time.time()
        for key, held in list(self.held.items()):
            while held and held[0][1].not_before <= now:
                ref, task = held.popleft()
                self._dispatch(ref, task)
            if not held:
                del self.held[key]

    async def _produce(self, records: list[Record]) -> None:
        """Write until the sink acknowledges: a task is not settled before its successor is durable."""
        delay = 0.5
        while True:
            try:
                await self.sink.send_many(records)
                return
            except BridgeError as exc:
                if not exc.retriable or self._stopping:
                    raise
                log.warning("cannot write delivery records yet (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    # --- per task ---------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
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

    def _dispatch(self, ref: TaskRef, task: DeliveryTask) -> None:
        known = task_key(task)
        if task.trigger == "live" and (known in self.delivered or known in self.sending):
            # Redone after a crash or rebalance, or a parked copy of one being pushed now: it
            # went (or is going) out already; a failure of that push schedules its own retry.
            _counted(task.partner_id, "already_delivered").inc()
            self.source.settled(ref)
            return
        partner = self.view.partner(task.partner_id)
        if partner is None or partner.state != "active":
            reason = "partner deleted" if partner is None else "partner disabled"
            self._spawn(self._finish(ref, task, SendResult.dead("partner_inactive", reason),
                                     NextStep("dead", reason=reason)))
            return
        slots = self._slots(partner)
        if partner.delivery.ordered:
            if slots.ordered_queue is None:
                slots.ordered_queue = asyncio.Queue()
                self._spawn(self._ordered_loop(partner.id, slots.ordered_queue))
            slots.ordered_queue.put_nowait((ref, task))
            return
        if should_spill(len(slots.pending), slots.drain.per_second(time.time(), slots.limit),
                        self.settings.partner_backlog, self.policy.schedule[0],
                        from_retry_tier=ref.topic in self.topic_tier):
            if not self._spilling:  # the first of this turn: one write for all of them
                asyncio.get_running_loop().call_soon(self._spill_now)
            self._spilling.append((ref, task))
            return
        self.sending.add(known)
        slots.pending.append(Waiting(ref, task, known))
        slots.partner = partner
        if not slots.draining:
            slots.draining = True
            self._spawn(self._drain(slots))

    async def _drain(self, slots: PartnerSlots) -> None:
        """Per partner, while tasks wait: take a slot, then push what waits (one push per slot).

        One coroutine per partner, not per task: a waiting task is an entry of ``pending``,
        not a coroutine suspended on the semaphore (a coroutine, a semaphore waiter and a
        done-callback per task were a tenth of the worker's CPU in s1 (d)). For a partner with
        ``maxBatch`` > 1, whatever waits when a slot frees goes together (up to maxBatch
        events); nothing waits to fill a batch, so an idle partner's task goes alone at once.
        """
        try:
            while slots.pending:
                await slots.sem.acquire()
                partner = slots.partner
                assert partner is not None
                members = take_batch(slots.pending, partner.delivery.max_batch)
                if not members:
                    slots.sem.release()
                    break
                self._spawn(self._push(partner, slots, members))
        finally:
            slots.draining = False

    async def _push(self, partner: Partner, slots: PartnerSlots, members: list[Waiting]) -> None:
        """Push ``members`` as one (their slot is taken), free the slot, then record and settle."""
        try:
            started = time.time()
            try:
                push = members[0].task if len(members) == 1 else merge_tasks([m.task for m in members])
                result = await self._attempt_safely(push, partner)
            finally:
                slots.sem.release()
            slots.drain.record(time.time(), len(members), started)
            await self._finish(members[0].ref, push, result,
                               also=[(m.ref, m.task) for m in members[1:]])
        finally:
            for member in members:
                self.sending.discard(member.key)

    async def _attempt_safely(self, task: DeliveryTask, partner: Partner) -> SendResult:
        """A bug in an attempt must not strand the task unsettled: it becomes a retriable failure."""
        try:
            return await self._attempt(task, partner)
        except Exception as exc:  # noqa: BLE001 - logged with its traceback, then retried
            log.exception("delivery attempt for %s failed unexpectedly", task.delivery_id)
            return SendResult.retry("internal_error", f"{type(exc).__name__}: {exc}", 0.0)

    async def _ordered_loop(self, partner_id: str,
                            queue: asyncio.Queue[tuple[TaskRef, DeliveryTask] | None]) -> None:
        """One task at a time, in order; a failing task is retried in place, blocking only this partner."""
        while not self._stopping:
            item = await queue.get()
            if item is None:
                return
            ref, task = item
            while True:
                partner = self.view.partner(partner_id)
                if partner is None or partner.state != "active":
                    await self._finish(ref, task, SendResult.dead("partner_inactive", "partner inactive"),
                                       NextStep("dead", reason="partner inactive"))
                    break
                result = await self._attempt_safely(task, partner)
                if result.kind == "delivered":
                    await self._finish(ref, task, result)
                    break
                step = self.policy.next_step(task.attempt, result, self.rng)
                if step.action == "dead":
                    await self._finish(ref, task, result, step)
                    break
                await self._record(task, result, "retry", time.time() + step.delay_s)
                await asyncio.sleep(step.delay_s)
                task = replace(task, attempt=task.attempt + 1, trigger="retry")

    def _spill_now(self) -> None:
        spilled, self._spilling = self._spilling, []
        if spilled:
            self._spawn(self._spill(spilled))

    async def _spill(self, spilled: list[tuple[TaskRef, DeliveryTask]]) -> None:
        """Partners' backlogs are full: park these tasks in the first retry tier (not an attempt).

        The tasks spilled in one turn of the loop (a burst read in one poll) go in one write
        and one coroutine, not one each.
        """
        not_before = time.time() + self.policy.schedule[0]
        topic = self.tier_topics[1]
        await self._produce([(topic, task.partner_id.encode(), replace(task, not_before=not_before).encode(), None)
                             for _, task in spilled])
        for ref, task in spilled:
            _counted(task.partner_id, "deferred").inc()
            self.source.settled(ref)

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

    async def _finish(self, ref: TaskRef, task: DeliveryTask, result: SendResult,
                      step: NextStep | None = None,
                      also: Sequence[tuple[TaskRef, DeliveryTask]] = ()) -> None:
        """Act on the result (done / next tier / dead letter), record it, then settle.

        ``step``: the retry decision when the caller made it already (it is made once per
        attempt). ``also``: the other tasks a batched push carried (``task`` is then their
        merge); they settle with it, and the merged task is what retries or is dead-lettered.
        """
        now = time.time()
        records: list[Record] = []
        pkey = task.partner_id.encode()
        if result.kind == "delivered":
            kind, next_at = "delivered", None
            self.delivered.add(task_key(task), now)
            for _, member in also:
                self.delivered.add(task_key(member), now)
            if task.ingest_ts:
                E2E.observe(max(0.0, now - task.ingest_ts))
        else:
            step = step or self.policy.next_step(task.attempt, result, self.rng)
            if step.action == "dead":
                kind, next_at = "dead", None
                records.append((self.dlq_topic, pkey, dead_letter(task, result, step.reason, now), None))
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
        _counted(task.partner_id, kind).inc()
        self.source.settled(ref)
        for member_ref, _ in also:
            self.source.settled(member_ref)

    async def _settle_raw_dead(self, ref: TaskRef, item: Undecodable) -> None:
        record = json.dumps({"undecodable": item.value.decode(errors="replace"), "reason": item.reason,
                             "dead_at": time.time()}).encode()
        await self._produce([(self.dlq_topic, None, record, None)])
        self.source.settled(ref)
