"""Where an event's milliseconds go between the platform's POST and the partner's receipt.

A tap (its own consumer, ``read_committed``, 1 ms fetch wait) reads the bridge's topics while a
scenario runs and stamps, per event (its ``benchTs``, the moment the push was sent):

- **event in Kafka**: the ``bridge.events`` record's timestamp (ingest's produce call);
- **task produced**: the ``bridge.deliveries`` record's timestamp (routing's produce, inside its
  open transaction);
- **task committed**: when the tap first sees the task (visible to ``read_committed`` readers
  once routing's transaction committed; the tap's own fetch adds up to a few ms);
- **POST start**: the outcome's ``attempted_at - latency_ms`` (the worker's clock, ms);
- **receipt**: the partner receiver's own latency (reported beside it by the scenario).

Each value is milliseconds since ``benchTs``; the report shows the p50/p99 of each cumulative
mark and the p50 of each hop (difference between consecutive marks of the same event).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

_TS = re.compile(rb'"benchTs":([0-9.eE+-]+)')
_SEQ = re.compile(rb'"benchSeq":(\d+)')

MARKS = ("event_in_kafka", "task_produced", "task_committed", "post_start")


class HopTap:
    """Consumes the events, deliveries and outcomes topics of one bridge stack in a thread."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics  # logical name ("events", "deliveries", "outcomes") -> topic
        self.stop_flag = threading.Event()
        #: benchSeq -> {mark: epoch seconds}, plus "sent" (benchTs)
        self.seen: dict[int, dict[str, float]] = {}
        self._delivery_seq: dict[str, int] = {}
        self._pending_outcomes: list[tuple[str, float]] = []
        self.thread = threading.Thread(target=self._run, name="hop-tap", daemon=True)
        self.ready = threading.Event()

    def start(self) -> HopTap:
        self.thread.start()
        self.ready.wait(30)
        return self

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(30)

    def reset(self) -> None:
        self.seen.clear()
        self._delivery_seq.clear()
        self._pending_outcomes.clear()

    def _run(self) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        from bridge.delivery.records import decode_outcome

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"hop-tap-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "fetch.wait.max.ms": 1, "fetch.error.backoff.ms": 1})
        meta = consumer.list_topics(timeout=10)
        parts = [TopicPartition(t, p, OFFSET_END) for t in self.topics.values()
                 for p in meta.topics[t].partitions]
        consumer.assign(parts)
        by_topic = {v: k for k, v in self.topics.items()}
        self.ready.set()
        try:
            while not self.stop_flag.is_set():
                # consume(n, timeout) returns only when n records are there or the timeout
                # passed: at low rates that held each mark back by up to the timeout.
                for message in consumer.consume(500, 0) or consumer.consume(1, 0.05):
                    if message.error() or message.value() is None:
                        continue
                    now = time.time()
                    kind = by_topic.get(message.topic())
                    value = message.value()
                    if kind == "outcomes":
                        try:
                            record = decode_outcome(value)
                        except Exception:  # noqa: BLE001 - a tap, not a test
                            continue
                        if record["result"] == "delivered" and record["attempt"] == 0:
                            at = record["attempted_at"]  # a datetime (Avro timestamp-millis)
                            at = at.timestamp() if hasattr(at, "timestamp") else at / 1000
                            start = at - record["latency_ms"] / 1000
                            self._outcome(record["delivery_id"], start)
                        continue
                    seq_m, ts_m = _SEQ.search(value), _TS.search(value)
                    if seq_m is None or ts_m is None:
                        continue
                    seq = int(seq_m.group(1))
                    marks = self.seen.setdefault(seq, {"sent": float(ts_m.group(1))})
                    stamp = message.timestamp()[1] / 1000
                    if kind == "events":
                        marks.setdefault("event_in_kafka", stamp)
                    elif kind == "deliveries":
                        marks.setdefault("task_produced", stamp)
                        marks.setdefault("task_committed", now)
                        try:
                            delivery_id = json.loads(value)["delivery_id"]
                        except (ValueError, KeyError):
                            continue
                        self._delivery_seq[delivery_id] = seq
                self._flush_outcomes()
        finally:
            consumer.close()

    def _outcome(self, delivery_id: str, start: float) -> None:
        self._pending_outcomes.append((delivery_id, start))

    def _flush_outcomes(self) -> None:
        # An outcome can arrive before the tap has read its task: keep it until it has.
        keep = []
        for delivery_id, start in self._pending_outcomes:
            seq = self._delivery_seq.get(delivery_id)
            if seq is None:
                keep.append((delivery_id, start))
                continue
            self.seen[seq].setdefault("post_start", start)
        self._pending_outcomes = keep[-100_000:]

    def summary(self) -> dict[str, Any]:
        """p50/p99 (ms since sent) of each mark, and the p50 of each hop, over complete events."""
        from bench.harness import pct

        complete = [m for m in list(self.seen.values()) if all(k in m for k in MARKS)]
        out: dict[str, Any] = {"events": len(complete), "seen": len(self.seen)}
        previous = "sent"
        for mark in MARKS:
            cumulative = sorted(1000 * (m[mark] - m["sent"]) for m in complete)
            hop = sorted(1000 * (m[mark] - m[previous]) for m in complete)
            out[mark] = {"p50_ms": pct(cumulative, 50), "p99_ms": pct(cumulative, 99),
                         "hop_p50_ms": pct(hop, 50), "hop_p99_ms": pct(hop, 99)}
            previous = mark
        return out
