"""The analytics feed: every ingested event, Avro-encoded, on ``bridge.analytics.events``.

``bridge.events`` keeps the platform's JSON losslessly for partners; analytics pipelines want typed
records. The envelope fields are typed (``schemas/platform_event.avsc``); the type-specific
``data`` and any other fields are JSON strings, so no field is lost and the schema stays stable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timezone
from typing import Any

from bridge import schemas
from bridge.events import EventRecord
from bridge.platform.notify import parse_time
from bridge.runtime.txloop import Out, TransactionalLoop, run_in_thread
from bridge.runtime.worker import Stage, Worker
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.analytics")
EVENT_SCHEMA = "platform_event"
_TYPED = {"eventId", "eventType", "status", "eventLvl", "srcIndex", "srcType", "srcName",
          "srcParentIndex", "srcParentIdex", "happenTime", "data"}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _happen_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parse_time(value)
    except ValueError:
        return None
    if moment.tzinfo is None:  # no zone: we cannot place it on the UTC axis honestly
        return None
    return int(moment.astimezone(timezone.utc).timestamp() * 1000)


def to_analytics(record: EventRecord) -> dict[str, Any]:
    """The Avro record (as a dict) for one ingested event."""
    raw = record.raw
    parent = raw.get("srcParentIndex", raw.get("srcParentIdex"))
    return {
        "event_id": record.event_id,
        "event_type": record.event_type,
        "status": record.status,
        "event_lvl": record.event_lvl,
        "linkage": record.linkage,
        "ability": record.ability,
        "src_index": record.src_index,
        "src_type": _str_or_none(raw.get("srcType")),
        "src_name": _str_or_none(raw.get("srcName")),
        "src_parent_index": _str_or_none(parent),
        "happen_time": _str_or_none(raw.get("happenTime")),
        "happen_time_ms": _happen_ms(raw.get("happenTime")),
        "send_time": record.send_time,
        "ingested_at": int(record.ingest_ts * 1000),
        # Compact, as ingest stored it: the default ", " separators made a record of compact
        # JSON half as large again, past the record limit for the largest events.
        "data_json": None if raw.get("data") is None else _compact(raw["data"]),
        "extra_json": _compact({k: v for k, v in raw.items() if k not in _TYPED}),
    }


Encoder = Callable[[dict[str, Any]], tuple[bytes, list[tuple[str, bytes]]]]


def encoder(settings: Settings, topic: str) -> Encoder:
    """Schemaless Avro + fingerprint header, or the Confluent wire format with a registry."""
    if settings.schema_registry_url:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        client = SchemaRegistryClient({"url": settings.schema_registry_url})
        schema_text = (schemas.schema_dir() / f"{EVENT_SCHEMA}.avsc").read_text()
        serializer = AvroSerializer(client, schema_text)
        context = SerializationContext(topic, MessageField.VALUE)

        def confluent(record: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
            return serializer(record, context), []

        return confluent

    header = [(schemas.SCHEMA_HEADER, schemas.schema_fingerprint(EVENT_SCHEMA).encode())]

    def schemaless(record: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
        return schemas.encode(EVENT_SCHEMA, record), header

    return schemaless


class Feed:
    """The analytics handler of the transactional loop: stateless, one Avro record per event."""

    changelog: str | None = None

    def __init__(self, settings: Settings) -> None:
        table = topic_table(settings)
        self.source = table["events"].name
        self.feed = table["analytics.events"].name
        self.encode = encoder(settings, self.feed)

    def restore(self, partition: int, entries: dict[bytes, bytes]) -> None:
        pass

    def revoke(self, partition: int) -> None:
        pass

    def process(self, message: Any) -> list[Out]:
        # A record that does not decode raises: the loop keeps it on events.rejected.
        record = EventRecord.decode(message.value())
        data, headers = self.encode(to_analytics(record))
        return [Out(self.feed, message.key(), data, headers)]

    def tick(self, now: float) -> list[Out]:
        return []


#: The feed's transactions at most this often (it is read by dashboards, not waited for).
ANALYTICS_INTERVAL_S = 0.25


def stage(settings: Settings) -> Stage:
    """The analytics loop: bridge.events → bridge.analytics.events (Avro), exactly once."""
    feed = Feed(settings)

    async def run(worker: Worker) -> None:
        # Its own consumer group and transactions, like routing: a restart loses nothing.
        await run_in_thread(TransactionalLoop(settings, "analytics", feed.source, feed,
                                              batch=5000, min_interval_s=ANALYTICS_INTERVAL_S),
                            worker.stop, "analytics")

    return Stage("analytics", run)
