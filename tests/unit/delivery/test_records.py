"""Unit tests of bridge.delivery.records: outcome and dead-letter records (Avro, JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from bridge import schemas
from bridge.delivery.records import (
    OUTCOME_SCHEMA,
    dead_letter,
    decode_outcome,
    encode_outcome,
    outcome,
    task_from_dead_letter,
)
from bridge.delivery.result import SendResult
from bridge.events import DeliveryTask
from tests.fixtures.tasks import make_task

REPO = Path(__file__).resolve().parents[3]
AVSC = REPO / "schemas" / "delivery_outcome.avsc"


FAIL_500 = SendResult.retry("http_500", "HTTP 500", 0.1, 500)


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _as_ms(value: Any) -> Any:
    return round(value.timestamp() * 1000) if isinstance(value, datetime) else value


OUTCOME_CASES = [
    ("delivered", SendResult.delivered(200, 0.0425), 1_700_000_010.5, None),
    ("retry", SendResult.retry("http_503", "HTTP 503", 1.25, 503, 30.0), 1_700_000_020.0,
     1_700_000_050.0),
    ("retry", SendResult.retry("timeout", "no answer in time (ReadTimeout)", 10.0),
     1_700_000_030.0, 1_700_000_035.123),
    ("dead", SendResult.dead("http_410", "HTTP 410 Gone", 0.3, 410), 1_700_000_040.0, None),
    ("dead", SendResult.dead("url_policy", "destination refused: metadata"), 1_700_000_050.0, None),
]


class TestRecords:
    @pytest.mark.parametrize(("kind", "result", "attempted_at", "next_retry_at"), OUTCOME_CASES)
    @pytest.mark.parametrize("trigger", ["live", "retry", "replay", "redrive"])
    def test_outcome_round_trip(self, kind: str, result: SendResult, attempted_at: float,
                                next_retry_at: float | None, trigger: str) -> None:
        task = make_task(attempt=2, trigger=trigger)
        record = outcome(task, result, kind, attempted_at, next_retry_at)
        assert record["result"] == kind
        assert record["attempted_at"] == int(attempted_at * 1000)
        assert record["next_retry_at"] == (None if next_retry_at is None else int(next_retry_at * 1000))
        assert record["ingested_at"] == int(task.ingest_ts * 1000)
        value, headers = encode_outcome(record)
        assert isinstance(value, bytes) and value
        decoded = decode_outcome(value)
        assert set(decoded) == set(record)
        # timestamp-millis fields come back as aware datetimes; everything else verbatim.
        for name in ("attempted_at", "next_retry_at", "ingested_at"):
            if record[name] is None:
                assert decoded[name] is None
            else:
                assert decoded[name] == _ms_to_dt(record[name])
        assert {k: _as_ms(v) for k, v in decoded.items()} == record
        assert decoded["partner_id"] == "partner-α"
        assert decoded["event_ids"] == ["ev-1", "ev-2"]
        assert decoded["status_code"] == result.status_code
        assert decoded["error"] == result.error
        assert decoded["latency_ms"] == pytest.approx(result.latency_s * 1000)

    def test_outcome_without_ingest_ts(self) -> None:
        task = make_task(ingest_ts=0.0)
        record = outcome(task, SendResult.delivered(204, 0.01), "delivered", 1_700_000_000.0, None)
        assert record["ingested_at"] is None
        assert decode_outcome(encode_outcome(record)[0])["ingested_at"] is None

    def test_header_carries_fingerprint(self) -> None:
        record = outcome(make_task(), SendResult.delivered(200, 0.01), "delivered", 1.7e9, None)
        _, headers = encode_outcome(record)
        parsed = fastavro.parse_schema(json.loads(AVSC.read_text()))
        expected = f"delivery_outcome@{fingerprint(to_parsing_canonical_form(parsed), 'CRC-64-AVRO')}"
        assert headers == [(schemas.SCHEMA_HEADER, expected.encode())]
        assert schemas.SCHEMA_HEADER == "bridge-schema"
        assert OUTCOME_SCHEMA == "delivery_outcome"

    def test_decodable_with_avsc_file_alone(self) -> None:
        """Any Avro reader with the .avsc decodes the record (the module's schemas.py docstring)."""
        import io
        record = outcome(make_task(), SendResult.retry("http_500", "HTTP 500", 0.2, 500),
                         "retry", 1.7e9, 1.7e9 + 5)
        value, _ = encode_outcome(record)
        parsed = fastavro.parse_schema(json.loads(AVSC.read_text()))
        decoded = fastavro.schemaless_reader(io.BytesIO(value), parsed)
        assert decoded["error"] == "http_500" and decoded["result"] == "retry"

    def test_schema_is_documented(self) -> None:
        schema = json.loads(AVSC.read_text())
        assert schema["type"] == "record"
        assert isinstance(schema.get("doc"), str) and schema["doc"].strip()
        assert schema["fields"]
        undocumented = [f["name"] for f in schema["fields"]
                        if not (isinstance(f.get("doc"), str) and f["doc"].strip())]
        assert undocumented == []

    def test_schema_fields_match_outcome_keys(self) -> None:
        schema = json.loads(AVSC.read_text())
        record = outcome(make_task(), SendResult.delivered(200, 0.01), "delivered", 1.7e9, None)
        assert [f["name"] for f in schema["fields"]] == list(record)

    @pytest.mark.parametrize(
        ("result", "reason"),
        [
            (SendResult.retry("http_500", "HTTP 500", 0.5, 500), "gave up after 9 attempts: HTTP 500"),
            (SendResult.dead("http_410", "HTTP 410 Gone", 0.1, 410), "permanent failure: HTTP 410 Gone"),
            (SendResult.retry("timeout", "no answer in time", 10.0), "gave up after 3 attempts"),
            (SendResult.dead("partner_inactive", "partner inactive"), "partner inactive"),
        ],
    )
    @pytest.mark.parametrize("attempt", [0, 2, 8])
    def test_dead_letter_round_trip(self, result: SendResult, reason: str, attempt: int) -> None:
        task = make_task(attempt=attempt, trigger="retry" if attempt else "live",
                         not_before=1_700_000_500.5)
        data = dead_letter(task, result, reason, now=1_700_001_000.0,
                           first_attempt_at=1_700_000_001.0)
        assert isinstance(data, bytes)
        assert "Caméra Nord — 北门".encode() in data  # UTF-8 kept, not \u-escaped
        back, record = task_from_dead_letter(data)
        assert back == task
        assert isinstance(back.event_ids, tuple)
        assert record["attempts"] == attempt + 1
        assert record["reason"] == reason
        assert record["last_error"] == result.error
        assert record["last_status_code"] == result.status_code
        assert record["last_detail"] == result.detail
        assert record["dead_at"] == 1_700_001_000.0
        assert record["created_at"] == task.created_at
        assert record["first_attempt_at"] == 1_700_000_001.0

    def test_dead_letter_then_redrive_copy_equal(self) -> None:
        task = make_task()
        back, _ = task_from_dead_letter(dead_letter(task, FAIL_500, "r", now=1.0))
        # The task re-encodes to the same bytes (a redrive keeps the same delivery id and body).
        assert back.encode() == task.encode()
        assert DeliveryTask.decode(back.encode()) == task
