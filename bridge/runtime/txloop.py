"""An exactly-once consume → transform → produce loop over one source topic (Kafka transactions).

The loop keeps no offset of its own: per batch, the records it produces, the state changes it
writes to its changelog topic and the source offsets it consumed are committed in **one Kafka
transaction** (KIP-98, with KIP-447 consumer-group fencing). A crash at any point leaves either
all of a batch or none of it; the next owner of the partition restores the state from the
changelog and continues from the committed offset. (Why this loop and not a stream framework's
agents: the README's "Design" section.)

A stage plugged into the loop is a ``Handler``: it turns one source record into output records,
emits timed output on ``tick``, and gets its per-partition state back through ``restore``. State
changes are ordinary outputs to the changelog topic, on the source record's partition.

Consumers of the outputs read with ``isolation.level=read_committed`` (confluent-kafka's default),
so they never see a batch that was aborted.

Slightly over 400 lines on purpose: a batch's whole life (consume, handle, set aside what cannot
be carried, commit or abort, restore after a rebalance) is one transaction's contract, and split
across modules its ordering rules would be hard to check.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from bridge.errors import BridgeError
from bridge.events import TASK_HEADROOM, record_size
from bridge.kafka.config import client_config
from bridge.kafka.reader import BEGINNING, TopicReader
from bridge.logfilters import Throttle
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.processor")
FAILED = Counter("bridge_stage_failures_total",
                 "Records a stage could not process or produce (kept on events.rejected)",
                 ["stage", "reason"])
#: Where a transaction's time goes. Routing's transaction is on every event's path to its partner
#: (an event waits for the one in flight, then for its own); the phases tell the client's share
#: (produce calls) from the broker round trips (offsets: AddOffsetsToTxn + TxnOffsetCommit;
#: commit: the flush of the produced records + EndTxn).
PHASE = Histogram("bridge_stage_transaction_seconds", "Duration of each phase of a stage's transaction",
                  ["stage", "phase"],
                  buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10))
_throttle = Throttle(lines=10, per_s=10.0)

#: Longest prefix of a source record kept in its rejected record (which must itself fit).
REJECTED_PREFIX = 65_536


@dataclass(frozen=True)
class Out:
    """One record to produce inside the batch's transaction."""

    topic: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (state deleted)
    headers: list[tuple[str, bytes]] | None = None
    partition: int | None = None  # changelog records go to the source record's partition

    def size(self) -> int:
        return record_size(self.key, self.value, self.headers)


class Handler(Protocol):
    """What a stage supplies to the loop. Called from the loop's thread only."""

    #: Compacted changelog topic of the stage's state (same partition count as the source), or None.
    changelog: str | None

    def restore(self, partition: int, entries: dict[bytes, bytes]) -> None:
        """Take over ``partition`` with its state (latest value per key) from the changelog."""

    def revoke(self, partition: int) -> None:
        """Forget ``partition``: another worker may own it now."""

    def process(self, message: Any) -> list[Out]:
        """Outputs for one source record (a confluent-kafka Message without error)."""

    def tick(self, now: float) -> list[Out]:
        """Timed outputs (released waits, expired state)."""


class RestartSession(Exception):
    """The producer or consumer is in a state only a fresh session (and state restore) clears."""


class Hung(RestartSession):
    """A librdkafka call did not return by its deadline; its producer must not be touched again."""


def _bounded(call: Any, timeout: float, what: str) -> None:
    """Run a blocking librdkafka call with a hard deadline; its exception is re-raised here.

    On the deadline the call is abandoned on its daemon thread (a C call cannot be interrupted)
    and the session restarts with a new producer; the abandoned transaction is aborted by the
    broker after ``transaction.timeout.ms`` (or at once, by the next producer, with a stable
    ``BRIDGE_WORKER_ID``).
    """
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"bounded-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        log.error("%s did not return within %.0f s; abandoning this producer", what, timeout)
        raise Hung(f"{what} did not return within {timeout:.0f} s")
    if outcome[0] is not None:
        raise outcome[0]


def transactional_id(settings: Settings, stage: str) -> str:
    """Stable with ``BRIDGE_WORKER_ID`` (a restarted worker aborts its predecessor's open
    transaction at once); otherwise unique per process (an open transaction of a crashed process
    then blocks read_committed readers of its partitions until the transaction timeout)."""
    suffix = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return f"{settings.app_id}-{stage}-{suffix}"


class TransactionalLoop:
    """Runs ``handler`` over ``source`` in consumer group ``group`` until ``stop`` is set."""

    def __init__(self, settings: Settings, stage: str, source: str, handler: Handler,
                 tick_s: float = 1.0, batch: int = 500, min_interval_s: float = 0.0) -> None:
        self.settings = settings
        self.stage = stage
        self.source = source
        self.handler = handler
        self.tick_s = tick_s
        self.batch = batch
        #: Shortest time between two transactions: a stage nobody waits for (the analytics feed)
        #: commits bigger batches less often, leaving the broker and the GIL to routing.
        self.min_interval_s = min_interval_s
        self.group = f"{settings.app_id}-{stage}"
        self.rejected = topic_table(settings)["events.rejected"].name
        #: Largest record a stage may derive: a delivery task must still fit once delivery
        #: dead-letters it, and one bound for every output keeps the rule simple.
        self.max_output_bytes = settings.max_record_bytes - TASK_HEADROOM
        self.assigned: set[int] = set()
        self._phases = tuple(PHASE.labels(stage, phase) for phase in ("produce", "offsets", "commit"))

    # --- sessions ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                self._session(stop)
                delay = 0.5
            except (RestartSession, KafkaException) as exc:
                log.warning("%s: restarting its Kafka session (%s)", self.stage, exc)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                for partition in sorted(self.assigned):
                    self.handler.revoke(partition)
                self.assigned.clear()

    def _producer(self) -> Producer:
        producer = Producer(client_config(self.settings, **{
            "transactional.id": transactional_id(self.settings, self.stage),
            "transaction.timeout.ms": int(self.settings.transaction_timeout_s * 1000),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            # Right after a commit the coordinator answers the next AddOffsetsToTxn with
            # CONCURRENT_TRANSACTIONS until the markers are written; librdkafka's default 100 ms
            # backoff made that 98 ms of every transaction here, 5 ms made it 7.5 ms, 1 ms halves
            # send_offsets_to_transaction again (p50 10.9 -> 5.3 ms, measured against the local
            # broker; backoff still grows to 500 ms on real failures).
            "retry.backoff.ms": 1,
            "retry.backoff.max.ms": 500,
        }))
        producer.init_transactions(60)
        return producer

    def _consumer(self) -> Consumer:
        consumer = Consumer(client_config(self.settings, **{
            "group.id": self.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            "fetch.wait.max.ms": 50,
            # Restoring a large changelog happens inside the assignment callback.
            "max.poll.interval.ms": 600_000,
        }))
        consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_revoke)
        return consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs inside consume(), between batches: no transaction is open here.
        numbers = sorted(tp.partition for tp in partitions)
        restored = self._restore(numbers) if self.handler.changelog else {p: {} for p in numbers}
        for partition in numbers:
            self.handler.restore(partition, restored[partition])
            self.assigned.add(partition)
        log.info("%s: assigned partitions %s (restored %d state entries)", self.stage, numbers,
                 sum(len(v) for v in restored.values()))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            if tp.partition in self.assigned:
                self.handler.revoke(tp.partition)
                self.assigned.discard(tp.partition)
        log.info("%s: revoked %d partitions", self.stage, len(partitions))

    def _restore(self, partitions: list[int]) -> dict[int, dict[bytes, bytes]]:
        """The latest committed value per key of each changelog partition (tombstones removed)."""
        entries: dict[int, dict[bytes, bytes]] = {p: {} for p in partitions}
        if not partitions:
            return entries
        assert self.handler.changelog is not None
        config = client_config(self.settings, **{
            "group.id": f"{self.group}-restore",  # assign() only: never joins, never commits
            "isolation.level": "read_committed"})
        try:
            with TopicReader(config, self.handler.changelog) as reader:
                for message in reader.read({p: (BEGINNING, None) for p in partitions}, timeout_s=300):
                    table = entries[message.partition()]
                    if message.value() is None:
                        table.pop(message.key(), None)
                    else:
                        table[message.key()] = message.value()
        except (TimeoutError, BridgeError) as exc:
            raise RestartSession(f"restoring {self.handler.changelog}: {exc}") from exc
        return entries

    def _session(self, stop: threading.Event) -> None:
        producer = self._producer()
        consumer = self._consumer()
        abandoned = False
        next_tick = time.time() + self.tick_s
        try:
            while not stop.is_set():
                messages = consumer.consume(self.batch, 0) or consumer.consume(1, 0.1)
                outputs: list[Out] = []
                positions: dict[int, int] = {}
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.fatal():
                            raise RestartSession(error.str())
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("%s consumer: %s", self.stage, error.str())
                        continue
                    if message.partition() not in self.assigned:
                        continue
                    outputs.extend(self._process(message))
                    positions[message.partition()] = message.offset() + 1
                now = time.time()
                if now >= next_tick:
                    outputs.extend(self.handler.tick(now))
                    next_tick = now + self.tick_s
                if outputs or positions:
                    try:
                        self._commit(producer, consumer, outputs, positions)
                    except Hung:
                        abandoned = True
                        raise
                    if self.min_interval_s:
                        stop.wait(self.min_interval_s)
        finally:
            try:
                consumer.close()
            except KafkaException as exc:
                log.warning("%s: closing the consumer: %s", self.stage, exc)
            if not abandoned:  # a producer stuck in a call is left alone
                producer.flush(5)

    def _process(self, message: Any) -> list[Out]:
        """The handler's outputs, each within the record limit; never an exception.

        One rule for every stage: a record the handler fails on (a bug), or an output too large
        for Kafka, goes with its reason and source offset to ``bridge.events.rejected`` in the
        same transaction, and the loop carries on. Retrying it could only fail the same way, and
        a failed transaction would restart the stage at the same record, forever.
        """
        try:
            outputs = self.handler.process(message)
        except Exception as exc:  # noqa: BLE001 - classified here, once, for every stage
            return [self._reject(message, "exception", f"{type(exc).__name__}: {exc}", exc)]
        return [out if out.size() <= self.max_output_bytes else self._reject(
            message, "record_too_large",
            f"a record for {out.topic} (key {(out.key or b'')[:100]!r}) would be {out.size()} "
            f"bytes; at most {self.max_output_bytes} are written") for out in outputs]

    def _reject(self, message: Any, reason: str, detail: str, exc: BaseException | None = None) -> Out:
        """The rejected record of ``message``: bounded, ASCII JSON, with where it came from."""
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        FAILED.labels(self.stage, reason).inc()
        # A bug keeps its traceback; an input the stage cannot carry is no bug, one line says it.
        emit = (lambda *a: log.error(*a, exc_info=exc)) if exc is not None else log.error
        _throttle(emit, "%s could not handle %s (%s: %.300s); the record goes to %s",
                  self.stage, where, reason, detail, self.rejected)
        value = message.value() or b""
        return Out(self.rejected, None, json.dumps({
            "error": {"field": self.stage, "reason": reason, "message": detail[:2000]},
            "source": {"topic": message.topic(), "partition": message.partition(),
                       "offset": message.offset()},
            "recordBytes": len(value),
            "record": value[:REJECTED_PREFIX].decode("utf-8", errors="replace"),
            "ingestTs": time.time(),
        }, ensure_ascii=True).encode())

    def _commit(self, producer: Producer, consumer: Consumer, outputs: list[Out],
                positions: dict[int, int]) -> None:
        """One transaction: the outputs, and the consumed offsets in the consumer group."""
        phases = self._phases
        started = time.perf_counter()
        try:
            producer.begin_transaction()
            for out in outputs:
                kwargs: dict[str, Any] = {"key": out.key, "value": out.value, "headers": out.headers}
                if out.partition is not None:
                    kwargs["partition"] = out.partition
                while True:
                    try:
                        producer.produce(out.topic, **kwargs)
                        break
                    except BufferError:  # local queue full: serve delivery reports, then retry
                        producer.poll(0.05)
            produced = time.perf_counter()
            phases[0].observe(produced - started)
            if positions:
                offsets = [TopicPartition(self.source, p, o) for p, o in sorted(positions.items())]
                timeout = self.settings.transaction_timeout_s
                # librdkafka can block here past its timeout when the group coordinator went
                # away (confluentinc/librdkafka#5456, #5511; seen here after a broker restart):
                # a watchdog gives up on this producer and the session starts afresh.
                _bounded(lambda: producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), timeout), 2 * timeout + 5,
                    "send_offsets_to_transaction")
            sent = time.perf_counter()
            phases[1].observe(sent - produced)
            self._finish(producer)
            phases[2].observe(time.perf_counter() - sent)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.txn_requires_abort():
                try:
                    producer.abort_transaction(30)
                except KafkaException as abort_exc:
                    log.warning("%s: abort failed: %s", self.stage, abort_exc)
            # Whatever the handler changed in memory for this batch is not in Kafka: the state
            # is rebuilt from the changelog and processing resumes at the committed offsets.
            raise RestartSession(f"transaction failed: {exc}") from exc

    @staticmethod
    def _finish(producer: Producer) -> None:
        for _ in range(10):
            try:
                producer.commit_transaction(60)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.retriable():
                    continue
                raise
        raise RestartSession("commit_transaction kept failing with retriable errors")


async def run_in_thread(loop: TransactionalLoop, stop: asyncio.Event, name: str) -> None:
    """Run ``loop`` on its own thread (librdkafka calls block) until ``stop`` is set.

    On ``stop`` the loop finishes (or aborts) its current transaction and closes its consumer.
    An exception that ends the loop's thread is raised here, so the worker sees the dead stage.
    """
    halt = threading.Event()
    events = asyncio.get_running_loop()
    ended: asyncio.Future[BaseException | None] = events.create_future()

    def target() -> None:
        failure: BaseException | None = None
        try:
            loop.run(halt)
        except BaseException as exc:  # handed to the worker's event loop
            failure = exc
        try:
            events.call_soon_threadsafe(lambda: ended.done() or ended.set_result(failure))
        except RuntimeError:  # the worker's event loop is closed: nobody waits any more
            pass

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        halt.set()
        if not ended.done():
            await asyncio.wait([ended], timeout=2 * loop.settings.transaction_timeout_s + 30)
    failure = ended.result() if ended.done() else None
    if failure is not None:
        raise failure
