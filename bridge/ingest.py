"""Ingest: a platform push becomes one record per event on ``bridge.events`` (key = eventType).

Policy for a push with some invalid events: the valid ones are accepted and the invalid ones are
written, with the reason, to ``bridge.events.rejected``; the answer is 200 (so the platform does not
re-send the valid events forever) and names every rejected event in ``data.rejected``. A push whose
envelope is unusable (not JSON, wrong method, ``events`` not a list) is refused whole with a 4xx.
Nothing is acknowledged before Kafka has acknowledged it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from bridge.events import EventRecord
from bridge.kafka import AsyncProducer
from bridge.notify import ParseResult, parse_notify
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.ingest")


def to_records(result: ParseResult, now: float) -> list[EventRecord]:
    notify = result.notify
    assert notify is not None
    return [
        EventRecord(
            event_id=e.event_id,
            event_type=e.event_type,
            status=e.status,
            event_lvl=e.event_lvl,
            src_index=e.src_index,
            linkage=e.is_linkage(notify.ability),
            ability=notify.ability,
            send_time=notify.send_time,
            params_extra=dict(notify.params_extra),
            ingest_ts=now,
            raw=dict(e.raw),
        )
        for e in result.valid
    ]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: list[dict[str, object]]


class Ingest:
    """Parses pushes and writes them to Kafka, answering only after Kafka acknowledged."""

    def __init__(self, settings: Settings, producer: AsyncProducer) -> None:
        table = topic_table(settings)
        self.events_topic = table["events"].name
        self.rejected_topic = table["events.rejected"].name
        self.producer = producer

    async def accept(self, body: bytes, log_events: bool = False) -> IngestResult:
        result = parse_notify(body)  # raises InvalidInput for an unusable envelope
        now = time.time()
        records = to_records(result, now)
        batch: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = [
            (self.events_topic, str(r.event_type).encode(), r.encode(), None) for r in records
        ]
        rejected = [{"index": e.index, "field": e.field, "message": e.message} for e in result.errors]
        if rejected:
            events = json.loads(body)["params"]["events"]
            for error in result.errors:
                batch.append((self.rejected_topic, None, json.dumps(
                    {"error": {"field": error.field, "message": error.message},
                     "event": events[error.index], "ingestTs": now},
                    ensure_ascii=False, default=str).encode(), None))
        await self.producer.send_many(batch)
        if log_events:
            for r in records:
                log.info("recv event eventType=%s eventId=%s status=%s srcIndex=%s",
                         r.event_type, r.event_id, r.status, r.src_index)
        for error in result.errors:
            log.warning("rejected event %s: %s", error.field, error.message)
        return IngestResult(len(records), rejected)
