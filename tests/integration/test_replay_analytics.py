"""Replay from the log and the analytics feed, on the real broker with real partner endpoints."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bridge.kafka.config import client_config
from bridge.settings import Settings
from tests.fixtures.cli import run_cli
from tests.fixtures.partner import FakePartner
from tests.fixtures.stack import ADMIN, read_topic, running_stack, stack_settings

pytestmark = pytest.mark.integration
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat()


def replayed(fake: FakePartner, prefix: str) -> list[str]:
    return sorted(r.json()["params"]["events"][0]["eventId"] for r in fake.ok(prefix)
                  if r.headers.get("X-Bridge-Replay") == "replay")


@pytest.fixture
def outage(kafka_settings: Settings, fake_partner: FakePartner) -> Any:
    """A partner that was down for a window: before/after delivered, the window dead-lettered."""
    settings = stack_settings(kafka_settings, partitions=2, retry_schedule=[0.2])
    with running_stack(settings) as stack:
        fake_partner.heal("p")
        pid = stack.partner(fake_partner.url("/toggle/p"), types=[196883, 131330])
        stack.worker()
        for i in range(5):
            stack.push(f"before-{i}")
        assert len(fake_partner.wait_ok("/toggle/p", 5)) == 5
        time.sleep(1.5)
        fake_partner.break_("p")
        start = time.time()
        for i in range(6):
            stack.push(f"window-{i}")
        for i in range(4):
            stack.push(f"video-{i}", template="video_131330_event_vss_start.json")
        end = time.time()
        read_topic(settings, "deliveries.dlq", until=lambda rs: len(rs) >= 10)
        time.sleep(1.5)
        fake_partner.heal("p")
        for i in range(5):
            stack.push(f"after-{i}")
        fake_partner.wait_ok("/toggle/p", 10)
        yield stack, pid, start, end


def test_replay_of_the_window_delivers_exactly_the_missed_events(outage: Any, fake_partner: FakePartner) -> None:
    stack, pid, start, end = outage
    dry = run_cli(stack.settings, "replay", "--partner", pid, "--from-time", iso(start), "--to-time", iso(end),
              "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would enqueue 10 deliveries" in dry.stdout
    assert replayed(fake_partner, "/toggle/p") == []  # a dry run sends nothing

    run = run_cli(stack.settings, "replay", "--partner", pid, "--from-time", iso(start), "--to-time", iso(end))
    assert run.returncode == 0, run.stderr
    assert "enqueued 10 deliveries" in run.stdout
    expected = sorted([f"window-{i}" for i in range(6)] + [f"video-{i}" for i in range(4)])
    deadline = time.monotonic() + 60
    while replayed(fake_partner, "/toggle/p") != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replayed(fake_partner, "/toggle/p") == expected
    # The replay reuses the live delivery ids: the partner can tell it is the same push.
    failed = {r.headers["X-Bridge-Delivery-Id"] for r in fake_partner.all("/toggle/p") if r.answered == 500}
    again = {r.headers["X-Bridge-Delivery-Id"] for r in fake_partner.ok("/toggle/p")
             if r.headers.get("X-Bridge-Replay") == "replay"}
    assert again == failed


def test_replay_with_event_type_filter_and_api(outage: Any, fake_partner: FakePartner) -> None:
    stack, pid, start, end = outage
    answer = stack.http.post("/admin/v1/replays", headers=ADMIN, json={
        "partnerId": pid, "fromTime": iso(start), "toTime": iso(end), "eventTypes": [131330]})
    assert answer.status_code == 202, answer.text
    replay_id = answer.json()["id"]
    deadline = time.monotonic() + 60
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = stack.http.get(f"/admin/v1/replays/{replay_id}", headers=ADMIN).json()
        if state["state"] != "running":
            break
        time.sleep(0.2)
    assert state["state"] == "done" and state["enqueued"] == 4 and state["byEventType"] == {"131330": 4}
    deadline = time.monotonic() + 60
    while len(replayed(fake_partner, "/toggle/p")) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replayed(fake_partner, "/toggle/p") == [f"video-{i}" for i in range(4)]


def test_replay_errors_and_cancellation(outage: Any) -> None:
    stack, pid, start, end = outage
    unknown = stack.http.post("/admin/v1/replays", headers=ADMIN, json={"partnerId": "p-nope",
                                                                       "fromTime": iso(start)})
    assert unknown.status_code == 404
    future = stack.http.post("/admin/v1/replays", headers=ADMIN, json={
        "partnerId": pid, "fromTime": iso(time.time() + 3600)})
    assert future.status_code == 400 and "nothing to replay" in future.json()["error"]["message"]

    slow = stack.http.post("/admin/v1/replays", headers=ADMIN, json={
        "partnerId": pid, "fromTime": iso(start - 60), "rate": 1})
    assert slow.status_code == 202
    cancelled = stack.http.delete(f"/admin/v1/replays/{slow.json()['id']}", headers=ADMIN).json()
    assert cancelled["state"] == "cancelled" and cancelled["enqueued"] < 20

    cli_unknown = run_cli(stack.settings, "replay", "--partner", "p-nope", "--from-time", iso(start))
    assert cli_unknown.returncode == 1 and "no partner" in cli_unknown.stderr


def test_start_before_retention_is_refused(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=1)
    with running_stack(settings) as stack:
        pid = stack.partner(fake_partner.url("/ok/ret"))
        for i in range(4):
            stack.push(f"old-{i}")
        time.sleep(1.2)
        cut = time.time()
        time.sleep(1.2)
        for i in range(2):
            stack.push(f"new-{i}")
        # What retention does, done at once: the first 4 records leave the log.
        admin = AdminClient(client_config(settings))
        topic = settings.topic_prefix + "events"
        [future] = admin.delete_records([TopicPartition(topic, 0, 4)]).values()
        future.result(timeout=30)
        for before in (cut - 10, cut):
            answer = stack.http.post("/admin/v1/replays", headers=ADMIN, json={
                "partnerId": pid, "fromTime": iso(before)})
            assert answer.status_code == 400 and "retention" in answer.json()["error"]["message"]
        # From where the log now starts, the replay runs.
        consumer = Consumer(client_config(settings, **{"group.id": "first"}))
        consumer.assign([TopicPartition(topic, 0, 4)])
        first = None
        while first is None:
            message = consumer.poll(0.5)
            first = message if message is not None and not message.error() else None
        consumer.close()
        later = stack.http.post("/admin/v1/replays", headers=ADMIN, json={
            "partnerId": pid, "fromTime": iso(first.timestamp()[1] / 1000), "dryRun": True})
        assert later.status_code == 202, later.text


def _fastavro_only_schema(name: str) -> Any:
    return fastavro.parse_schema(json.loads((SCHEMAS / f"{name}.avsc").read_text()))


def test_analytics_feed_and_export_read_with_fastavro_only(kafka_settings: Settings, tmp_path: Path,
                                                           fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=2)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/ok/an"))
        stack.worker()
        start = time.time() - 1
        for i in range(6):
            stack.push(f"an-{i}")
        stack.push("lk-0", template="linkage_event_rule_status0_SYNTHETIC.json")
        fake_partner.wait_ok("/ok/an", 6)

        schema = _fastavro_only_schema("platform_event")
        consumer = Consumer(client_config(settings, **{"group.id": "an-reader", "auto.offset.reset": "earliest"}))
        consumer.subscribe([settings.topic_prefix + "analytics.events"])
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while len(records) < 7 and time.monotonic() < deadline:
            message = consumer.poll(0.3)
            if message is not None and not message.error():
                headers = dict(message.headers() or [])
                assert headers["bridge-schema"].startswith(b"platform_event@")
                records.append(fastavro.schemaless_reader(io.BytesIO(message.value()), schema))
        consumer.close()
        by_id = {r["event_id"]: r for r in records}
        assert set(by_id) == {f"an-{i}" for i in range(6)} | {"lk-0"}
        acs = by_id["an-0"]
        assert acs["event_type"] == 196883 and acs["ability"] == "event_acs" and acs["linkage"] is False
        assert json.loads(acs["data_json"])["ExtEventCode"] == 196883
        assert json.loads(acs["extra_json"])["eventTypeName"].startswith("acs.")
        assert acs["happen_time_ms"] is not None
        assert by_id["lk-0"]["linkage"] is True and by_id["lk-0"]["event_lvl"] == 2

        out = tmp_path / "export"
        result = run_cli(settings, "export", "--topic", "events", "--from-time", iso(start), "--out", str(out))
        assert result.returncode == 0, result.stderr
        exported: list[dict[str, Any]] = []
        for path in sorted(out.glob("events-*.avro")):
            with open(path, "rb") as handle:
                reader = fastavro.reader(handle)
                assert reader.writer_schema["name"].endswith("PlatformEvent")
                exported.extend(reader)
        assert {r["event_id"] for r in exported} == set(by_id)

        outcomes_out = tmp_path / "outcomes"
        result = run_cli(settings, "export", "--topic", "outcomes", "--from-time", iso(start), "--out",
                     str(outcomes_out))
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = []
        for path in outcomes_out.glob("outcomes-*.avro"):
            with open(path, "rb") as handle:
                rows.extend(fastavro.reader(handle))
        assert {r["result"] for r in rows} == {"delivered"} and len(rows) >= 6
