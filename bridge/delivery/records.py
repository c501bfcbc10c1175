"""Outcome records (Avro, ``bridge.outcomes``) and dead letters (JSON, ``bridge.deliveries.dlq``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from bridge import schemas
from bridge.delivery.result import SendResult
from bridge.events import DeliveryTask

OUTCOME_SCHEMA = "delivery_outcome"


def millis(seconds: float | None) -> int | None:
    """Epoch seconds as the whole milliseconds the Avro records carry (None for unset)."""
    return None if seconds is None or seconds <= 0 else int(seconds * 1000)


def outcome(task: DeliveryTask, result: SendResult, kind: str, attempted_at: float,
            next_retry_at: float | None) -> dict[str, Any]:
    """One attempt as the analytics feed and the admin API see it."""
    return {
        "partner_id": task.partner_id,
        "delivery_id": task.delivery_id,
        "event_ids": list(task.event_ids),
        "event_type": task.event_type,
        "status": task.status,
        "event_dest": task.event_dest,
        "attempt": task.attempt,
        "trigger": task.trigger,
        "result": kind,
        "status_code": result.status_code,
        "error": result.error,
        "detail": result.detail,
        "latency_ms": result.latency_s * 1000,
        "attempted_at": int(attempted_at * 1000),
        "next_retry_at": millis(next_retry_at),
        "ingested_at": millis(task.ingest_ts),
    }


def encode_outcome(record: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [(schemas.SCHEMA_HEADER, schemas.schema_fingerprint(OUTCOME_SCHEMA).encode())]
    return schemas.encode(OUTCOME_SCHEMA, record), headers


def decode_outcome(data: bytes) -> dict[str, Any]:
    return schemas.decode(OUTCOME_SCHEMA, data)


def dead_letter(task: DeliveryTask, result: SendResult, reason: str, now: float,
                first_attempt_at: float | None = None) -> bytes:
    """The original task, how many attempts, the last status or error, and when."""
    return json.dumps({
        "task": asdict(task),
        "attempts": task.attempt + 1,
        "reason": reason,
        "last_status_code": result.status_code,
        "last_error": result.error,
        # Bounded: a dead letter must fit the record limit with its task (events.TASK_HEADROOM).
        "last_detail": result.detail[:2000],
        "dead_at": now,
        "created_at": task.created_at,
        "first_attempt_at": first_attempt_at,
    }, ensure_ascii=False).encode()


def task_from_dead_letter(data: bytes) -> tuple[DeliveryTask, dict[str, Any]]:
    record = json.loads(data)
    raw = dict(record["task"])
    raw["event_ids"] = tuple(raw["event_ids"])
    return DeliveryTask(**raw), record
