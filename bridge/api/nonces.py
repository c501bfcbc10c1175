"""Artemis nonces shared by every api replica, through one Kafka topic (``bridge.nonces``).

To check a nonce, an api produces a record keyed by a digest of (appKey, nonce), so that every
use of one nonce lands in one partition, learns the record's offset, and waits until its own
reader of that partition has applied the log up to that offset. Every replica applies the same
records in the same order with the same rule (the first record of a key within the window is
accepted, every later one is a replay), so all replicas agree, whichever wrote first: the log
decides a race between two replicas, not their clocks.

The reader keeps an index per key (the time of the last accepted use) fed in the background, so
a check costs one acknowledged produce and a lookup, not a scan. Memory is bounded: entries
expire one window after their use (by the log's own time, so expiry is the same everywhere) and
the index holds at most ``nonce_max_entries``. Only a SHA-256 digest of the pair is written and
kept: no nonce text in Kafka or memory, and 32 bytes per key whatever the nonce's length.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from cachetools import LRUCache
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from bridge.errors import KafkaUnavailable
from bridge.kafka.config import client_config
from bridge.settings import Settings
from bridge.topics import topic_table

__all__ = ["KafkaNonceStore", "nonce_key"]

# Decisions are looked up by the request that wrote the record, moments after it was applied.
_RECENT_DECISIONS = 10_000


def nonce_key(app_key: str, nonce: str) -> bytes:
    """The record key: a digest of the pair (a NUL cannot occur in either header value)."""
    return hashlib.sha256(f"{app_key}\0{nonce}".encode("utf-8", "surrogatepass")).digest()


class KafkaNonceStore:
    """A :class:`~bridge.artemis_signing.NonceStore` shared through Kafka; safe between threads.

    ``window_s`` is how long a nonce stays used (the api passes twice the signature window,
    as for the in-process cache). :meth:`seen` blocks for one produce and one read of the
    record back (a few milliseconds on a healthy cluster); when Kafka cannot answer within
    ``timeout_s`` it raises :class:`KafkaUnavailable` (the request gets a 503: fail closed).
    """

    def __init__(self, settings: Settings, window_s: float, max_entries: int = 100_000,
                 timeout_s: float = 5.0) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self._settings = settings
        self._topic = topic_table(settings)["nonces"].name
        self._window_s = window_s
        self._timeout_s = timeout_s
        # The log's time: the newest use applied. Expiry follows it, not this host's clock.
        self._log_now = 0.0
        self._max_entries = max_entries
        # Key digest -> time of its last accepted use, in the order accepted: expiry and the size
        # bound pop from the front. Not a cachetools TTLCache, which would not be the same rule:
        # it expires an entry by its timer at insertion rather than by the record's own stamp,
        # hides an expired entry the rule above still reads, reorders entries on lookup (so the
        # size bound would drop others), and takes twice the memory (27 against 13 MB per
        # 100,000 entries, measured with tracemalloc).
        self._index: OrderedDict[bytes, float] = OrderedDict()
        self._decisions: LRUCache[tuple[int, int], bool] = LRUCache(_RECENT_DECISIONS)
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self.error: str | None = None

    # lifecycle

    def start(self) -> KafkaNonceStore:
        """Start the background reader (it keeps trying while Kafka is unreachable)."""
        self._thread = threading.Thread(target=self._read, name="nonce-store", daemon=True)
        self._thread.start()
        # Connected now rather than by the first signed request, which would wait for it.
        self._ensure_producer()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self._poller:
            self._poller.join(timeout=2)
        if self._producer is not None:
            self._producer.flush(2)

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)

    # the check

    def seen(self, app_key: str, nonce: str, now: float) -> bool:
        partition, offset = self._produce(nonce_key(app_key, nonce), now)
        deadline = time.monotonic() + self._timeout_s
        with self._lock:
            while self._applied.get(partition, -1) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    raise KafkaUnavailable(
                        f"cannot check the nonce: {self._topic} was not read back within "
                        f"{self._timeout_s:g} s ({self.error or 'no answer'})")
                self._lock.wait(remaining)
            accepted = self._decisions.get((partition, offset))
            # Fell out of the recent decisions (this check waited behind tens of thousands of
            # others): refuse rather than guess; the client's retry carries a new nonce.
            return accepted is not True

    def _produce(self, key: bytes, now: float) -> tuple[int, int]:
        producer = self._ensure_producer()
        done = threading.Event()
        result: dict[str, Any] = {}

        def report(err: KafkaError | None, msg: Any) -> None:
            result["err"], result["msg"] = err, msg
            done.set()

        value = json.dumps({"ts": now}).encode()
        try:
            producer.produce(self._topic, key=key, value=value, on_delivery=report)
        except (BufferError, KafkaException) as exc:
            raise KafkaUnavailable(f"cannot record the nonce on {self._topic}: {exc}") from exc
        if not done.wait(self._timeout_s + 1):
            raise KafkaUnavailable(f"cannot record the nonce on {self._topic}: no acknowledgement")
        if result["err"] is not None:
            raise KafkaUnavailable(f"cannot record the nonce on {self._topic}: {result['err'].str()}")
        return result["msg"].partition(), result["msg"].offset()

    def _ensure_producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer(client_config(self._settings, **{
                    "enable.idempotence": True, "acks": "all",
                    # Each check waits for its own record: batching would only add latency.
                    "linger.ms": 0,
                    "message.timeout.ms": int(self._timeout_s * 1000),
                    "socket.connection.setup.timeout.ms": 5_000,
                }))
                self._poller = threading.Thread(target=self._poll, name="nonce-producer", daemon=True)
                self._poller.start()
            return self._producer

    def _poll(self) -> None:
        while not self._stop.is_set():
            assert self._producer is not None
            self._producer.poll(0.1)

    # the reader

    def _apply(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        """The rule every replica applies in log order (call with the lock held)."""
        try:
            ts = float(json.loads(value or b"")["ts"])
        except (ValueError, TypeError, KeyError):
            self.error = f"unreadable record at {self._topic}[{partition}]@{offset}"
            return
        self._log_now = max(self._log_now, ts)
        last = self._index.get(key)
        # A use stamped earlier than the accepted one (clocks of two replicas apart) is a replay too.
        accepted = last is None or ts - last > self._window_s
        if accepted:
            self._index[key] = ts
            self._index.move_to_end(key)
        self._decisions[(partition, offset)] = accepted
        self._expire()

    def _expire(self) -> None:
        # By the log's time, a second past the window: the rule above decides at the boundary.
        cutoff = self._log_now - self._window_s - 1
        while self._index:
            key, used = next(iter(self._index.items()))
            if used >= cutoff and len(self._index) <= self._max_entries:
                break
            del self._index[key]

    def _connect(self) -> Consumer:
        consumer = Consumer(client_config(self._settings, **{
            "group.id": f"nonce-store-{uuid.uuid4().hex}",  # never commits: assigned by hand
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
            "topic.metadata.refresh.interval.ms": 1000,
        }))
        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(self._topic, timeout=2).topics[self._topic]
                if metadata.error is not None:
                    raise KafkaException(metadata.error)
                partitions = sorted(metadata.partitions)
                # Ends first: a record written while this looks is then read, not skipped.
                ends = {p: consumer.get_watermark_offsets(TopicPartition(self._topic, p), timeout=5)[1]
                        for p in partitions}
                # Start one window back, with a margin for clocks: older uses cannot matter.
                since_ms = int((time.time() - self._window_s - 60) * 1000)
                starts = consumer.offsets_for_times(
                    [TopicPartition(self._topic, p, since_ms) for p in partitions], timeout=5)
                for tp in starts:
                    if tp.offset < 0:  # nothing that recent: start where the partition ended
                        tp.offset = ends[tp.partition]
            except (KafkaException, KeyError) as exc:
                self.error = str(exc)
                self._stop.wait(0.5)
                continue
            consumer.assign(starts)
            return consumer
        consumer.close()
        raise KafkaUnavailable("nonce store stopped before it connected")

    def _read(self) -> None:
        try:
            consumer = self._connect()
        except KafkaUnavailable:
            return
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, 0) or consumer.consume(1, 0.2)
                if not messages:
                    continue
                with self._lock:
                    for message in messages:
                        error = message.error()
                        if error is not None:
                            if error.code() != KafkaError._PARTITION_EOF:
                                self.error = error.str()
                            continue
                        self._apply(message.partition(), message.offset(), message.key(), message.value())
                        self._applied[message.partition()] = message.offset() + 1
                    self._lock.notify_all()
        finally:
            consumer.close()
