"""Status correlation per eventId, on the real broker with real partner endpoints."""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer

from bridge.events import EventRecord
from bridge.kafka.config import client_config
from bridge.settings import Settings
from tests.fixtures.partner import FakePartner
from tests.fixtures.stack import Stack, payload, read_topic, running_stack, stack_settings

pytestmark = pytest.mark.integration
LINK0 = "linkage_event_rule_status0_SYNTHETIC.json"
LINK4 = "linkage_event_rule_status4_update_SYNTHETIC.json"
PARKING = "parking_771760130_entry_event_pms_SYNTHETIC.json"
VIDEO = "video_131330_event_vss_start.json"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def events_of(fake: FakePartner, prefix: str) -> list[dict[str, Any]]:
    return [r.json()["params"]["events"][0] for r in fake.ok(prefix)]


def wait_for(check: Callable[[], bool], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def push_raw(stack: Stack, template: str, **changes: Any) -> None:
    body = payload(template)
    body["params"]["events"][0].update(changes)
    assert stack.http.post("/eventRcv", json=body).status_code == 200


def lifecycle_of(settings: Settings, event_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "lifecycle.avsc").read_text()))
    records = read_topic(settings, "lifecycle", lambda v: fastavro.schemaless_reader(io.BytesIO(v), schema),
                         until=lambda rs: any(r["event_id"] == event_id and until(r) for r in rs))
    return [r for r in records if r["event_id"] == event_id][-1]


@pytest.fixture
def stack(kafka_settings: Settings) -> Any:
    with running_stack(stack_settings(kafka_settings, partitions=2)) as stack:
        yield stack


def test_identical_resend_delivered_once(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/dd"), types=[196883])
    stack.worker()
    stack.push("dup-1")
    stack.push("dup-1")   # the platform re-sends the identical event
    stack.push("other-1")
    assert wait_for(lambda: len(fake_partner.ok("/ok/dd")) >= 2)
    time.sleep(2)
    assert sorted(e["eventId"] for e in events_of(fake_partner, "/ok/dd")) == ["dup-1", "other-1"]


def test_separate_and_merged_linkage_modes(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/sep"), types=[131588], subType=2)
    stack.partner(fake_partner.url("/ok/merged"), types=[131588], subType=2,
                  delivery={"linkageMode": "merged", "mergeWaitS": 60})
    stack.worker()
    push_raw(stack, LINK0, eventId="L-1")
    push_raw(stack, LINK4, eventId="L-1")
    assert wait_for(lambda: len(fake_partner.ok("/ok/merged")) >= 1 and len(fake_partner.ok("/ok/sep")) >= 1)
    time.sleep(2)
    # Separate (the platform's behaviour, default statuses 0,1,2): the status 0 only.
    assert [e["status"] for e in events_of(fake_partner, "/ok/sep")] == [0]
    # Merged: one push, the status 0 carrying the status 4's linkage result.
    [merged] = events_of(fake_partner, "/ok/merged")
    assert merged["status"] == 0 and merged["bridgeMerged"] is True
    assert merged["linkageResult"] == payload(LINK4)["params"]["events"][0]["linkageResult"]


def test_merged_wait_expires_then_late_update_is_its_own_push(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/late"), types=[131588], subType=2,
                  delivery={"linkageMode": "merged", "mergeWaitS": 1})
    stack.worker()
    push_raw(stack, LINK0, eventId="L-2")
    assert wait_for(lambda: len(fake_partner.ok("/ok/late")) >= 1)
    [alone] = events_of(fake_partner, "/ok/late")
    assert alone["status"] == 0 and "bridgeMerged" not in alone
    push_raw(stack, LINK4, eventId="L-2")
    assert wait_for(lambda: len(fake_partner.ok("/ok/late")) >= 2)
    assert [e["status"] for e in events_of(fake_partner, "/ok/late")] == [0, 4]


def test_worker_restart_between_status_0_and_4(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/rs"), types=[131588], subType=2,
                  delivery={"linkageMode": "merged", "mergeWaitS": 120})
    worker = stack.worker()
    push_raw(stack, LINK0, eventId="L-3")
    # The held status 0 is in the table (its changelog) once its lifecycle record is out.
    lifecycle_of(stack.settings, "L-3", lambda r: r["statuses"] == [0])
    worker.stop()
    stack.worker()
    push_raw(stack, LINK4, eventId="L-3")
    assert wait_for(lambda: len(fake_partner.ok("/ok/rs")) >= 1, timeout=120)
    time.sleep(3)
    got = events_of(fake_partner, "/ok/rs")
    assert len(got) == 1 and got[0]["bridgeMerged"] is True and got[0]["status"] == 0


def test_pictures_passed_through_or_attached(stack: Stack, fake_partner: FakePartner) -> None:
    statuses = {"pushStatuses": [0, 1, 2, 5]}
    stack.partner(fake_partner.url("/ok/pass"), types=[771760130], delivery=statuses)
    stack.partner(fake_partner.url("/ok/attach"), types=[771760130],
                  delivery={**statuses, "pictureMode": "attach"})
    stack.partner(fake_partner.url("/ok/nopics"), types=[771760130])  # default statuses 0,1,2
    stack.worker()
    push_raw(stack, PARKING, eventId="P-1")
    url = "http://10.0.0.20:6120/pic?P-1"
    push_raw(stack, PARKING, eventId="P-1", status=5, data={"picUrl": url})
    assert wait_for(lambda: len(fake_partner.ok("/ok/pass")) >= 2 and len(fake_partner.ok("/ok/attach")) >= 2)
    time.sleep(2)
    passed = events_of(fake_partner, "/ok/pass")
    assert [e["status"] for e in passed] == [0, 5] and passed[1]["data"] == {"picUrl": url}
    original, update = events_of(fake_partner, "/ok/attach")
    assert update["bridgeUpdate"]["type"] == "picture" and update["pictureUrls"] == [url]
    assert update["status"] == original["status"] == 0 and update["data"] == original["data"]
    assert [e["status"] for e in events_of(fake_partner, "/ok/nopics")] == [0]


def test_lifecycle_of_a_start_stop_pair(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/v"), types=[131330])
    stack.worker()
    push_raw(stack, VIDEO, eventId="V-1", status=1)
    time.sleep(1)
    push_raw(stack, VIDEO, eventId="V-1", status=2)
    record = lifecycle_of(stack.settings, "V-1", lambda r: r["complete"])
    assert record["statuses"] == [1, 2] and record["duration_ms"] > 0 and record["stop_time"] is not None


def test_ttl_expiry_releases_the_state(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=1, correlation_ttl_hours=2 / 3600)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/ok/ttl"), types=[196883])
        stack.worker()
        stack.push("T-1")
        stack.push("T-1")  # within the TTL: a duplicate
        assert wait_for(lambda: len(fake_partner.ok("/ok/ttl")) >= 1)
        time.sleep(1)
        assert len(fake_partner.ok("/ok/ttl")) == 1
        # After the TTL the state is gone: the same report is new again.
        def resent() -> bool:
            stack.push("T-1")
            return wait_for(lambda: len(fake_partner.ok("/ok/ttl")) >= 2, timeout=2)
        assert wait_for(resent, timeout=60)


def test_burst_of_distinct_event_ids_stays_within_the_bound(kafka_settings: Settings,
                                                           fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=2, correlation_max_entries=200)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/ok/burst"), types=[196883])
        stack.worker()
        template = payload()["params"]
        producer = Producer(client_config(settings, **{"linger.ms": 20}))
        for i in range(10_000):
            raw = copy.deepcopy(template["events"][0])
            raw["eventId"] = f"B-{i}"
            record = EventRecord(f"B-{i}", 196883, 0, None, raw["srcIndex"], False, "event_acs",
                                 template["sendTime"], {}, time.time(), raw)
            producer.produce(settings.topic_prefix + "events", key=b"196883", value=record.encode())
            if i % 1000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
        assert wait_for(lambda: len(fake_partner.ok("/ok/burst")) >= 10_000, timeout=300)

        changelog = settings.topic_prefix + "correlation"

        def live_entries() -> int:
            consumer = Consumer(client_config(settings, **{"group.id": f"cl-{time.time()}",
                                                       "auto.offset.reset": "earliest"}))
            consumer.subscribe([changelog])
            latest: dict[bytes, bool] = {}
            quiet = time.monotonic()
            while time.monotonic() - quiet < 3:
                message = consumer.poll(0.3)
                if message is not None and not message.error():
                    latest[message.key()] = message.value() is not None
                    quiet = time.monotonic()
            consumer.close()
            return sum(latest.values())

        # The bound is enforced as events arrive: the changelog (what a restarted worker
        # rebuilds) holds at most the bound once routing has caught up.
        assert wait_for(lambda: live_entries() <= 200, timeout=120)
