"""Reading the bridge's own topics back: recent outcomes, dead letters, and redrive.

Used by the admin API and the CLI; bounded reads with a consumer that never joins a group.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from bridge.delivery.records import decode_outcome, task_from_dead_letter
from bridge.errors import KafkaUnavailable
from bridge.events import DeliveryTask
from bridge.kafka import AsyncProducer, client_config
from bridge.settings import Settings
from bridge.topics import topic_table


def _consumer(settings: Settings) -> Consumer:
    return Consumer(client_config(settings, **{
        "group.id": f"readback-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.partition.eof": True}))


def scan(settings: Settings, topic: str, tail: int | None = None,
         timeout: float = 10.0) -> Iterator[Any]:
    """Messages of ``topic`` up to its current end (the last ``tail`` per partition if given)."""
    consumer = _consumer(settings)
    try:
        try:
            partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        except Exception as exc:
            raise KafkaUnavailable(f"cannot read {topic}: {exc}") from exc
        starts: list[TopicPartition] = []
        remaining: set[int] = set()
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                start = low if tail is None else max(low, high - tail)
                starts.append(TopicPartition(topic, p, start))
                remaining.add(p)
        if not starts:
            return
        consumer.assign(starts)
        deadline = time.monotonic() + timeout * 3
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == -191:  # _PARTITION_EOF: that partition is read
                    remaining.discard(message.partition())
                continue
            yield message
    finally:
        consumer.close()


def recent_outcomes(settings: Settings, partner_id: str | None = None, limit: int = 100,
                    per_partition: int = 5000) -> list[dict[str, Any]]:
    """The newest outcomes (all partners, or one), newest first."""
    topic = topic_table(settings)["outcomes"].name
    found = []
    for message in scan(settings, topic, tail=per_partition):
        if partner_id is not None and (message.key() or b"").decode() != partner_id:
            continue
        record = decode_outcome(message.value())
        found.append(record)
    found.sort(key=lambda r: r["attempted_at"], reverse=True)
    return [_jsonable(r) for r in found[:limit]]


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        out[key] = value.timestamp() if hasattr(value, "timestamp") else value
    return out


def dead_letters(settings: Settings, partner_id: str | None = None, since: float | None = None,
                 predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Dead letters (oldest first), each with its partition and offset as a stable ``id``."""
    topic = topic_table(settings)["deliveries.dlq"].name
    found = []
    for message in scan(settings, topic):
        try:
            task, record = task_from_dead_letter(message.value())
        except (ValueError, KeyError, TypeError):
            continue  # an undecodable task kept verbatim: shown by `dlq show`, not redrivable
        if partner_id is not None and task.partner_id != partner_id:
            continue
        if since is not None and record["dead_at"] < since:
            continue
        if predicate is not None and not predicate(record):
            continue
        record["id"] = f"{message.partition()}:{message.offset()}"
        found.append(record)
    return found


async def redrive(settings: Settings, producer: AsyncProducer, letters: list[dict[str, Any]],
                  progress: Callable[[int], None] | None = None) -> int:
    """Re-enqueue dead letters as fresh tasks with the same delivery id (trigger ``redrive``)."""
    topic = topic_table(settings)["deliveries"].name
    done = 0
    batch: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
    for letter in letters:
        raw = dict(letter["task"])
        raw["event_ids"] = tuple(raw["event_ids"])
        task = replace(DeliveryTask(**raw), attempt=0, trigger="redrive", not_before=0.0)
        batch.append((topic, task.partner_id.encode(), task.encode(), None))
        if len(batch) >= 200:
            await producer.send_many(batch)
            done += len(batch)
            batch = []
            if progress:
                progress(done)
    if batch:
        await producer.send_many(batch)
        done += len(batch)
        if progress:
            progress(done)
    return done
