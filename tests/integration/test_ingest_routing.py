"""Ingest and routing over the real broker: platform pushes in, per-partner delivery tasks out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import client_config
from bridge.settings import Settings
from tests.fixtures.artemis import (
    SUBSCRIBE,
    ArtemisClient,
    admin_headers,
    make_partner,
)
from tests.fixtures.stack import Worker, payload
from tests.fixtures.stack import stack_settings as shared_stack_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_settings(kafka_settings: Settings) -> Settings:
    return shared_stack_settings(kafka_settings)


@pytest.fixture
def http(stack_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(stack_settings)) as client:
        yield client


class Deliveries:
    """Reads bridge.deliveries from the beginning."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer(client_config(settings, **{
            "group.id": settings.app_id + "-test-reader", "auto.offset.reset": "earliest"}))
        self.consumer.subscribe([settings.topic_prefix + "deliveries"])
        self.tasks: list[dict[str, Any]] = []

    def wait(self, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.tasks) < count and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                task = json.loads(msg.value())
                assert msg.key().decode() == task["partner_id"]
                self.tasks.append(task)
        return self.tasks

    def drain(self, seconds: float = 3.0) -> list[dict[str, Any]]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            msg = self.consumer.poll(0.3)
            if msg is not None and msg.error() is None:
                self.tasks.append(json.loads(msg.value()))
        return self.tasks

    def close(self) -> None:
        self.consumer.close()


def subscribe(client: ArtemisClient, types: list[int], port: int, **extra: Any) -> None:
    answer = client.post(SUBSCRIBE, {"eventTypes": types, "eventDest": f"http://127.0.0.1:{port}/x",
                                     **extra})
    assert answer.json()["code"] == "0", answer.text


def test_payloads_routed_to_the_right_partners(stack_settings: Settings, http: TestClient) -> None:
    everything = make_partner(http, name="everything")       # raw + linkage, all levels
    raw_only = make_partner(http, name="raw-only")           # subType 0
    linkage_high = make_partner(http, name="linkage-high")   # subType 1, level 3 only
    acs_forbidden = make_partner(http, event_types=[196893], name="no-131330")

    all_types = [196883, 131330, 771760130, 131588]
    subscribe(everything, all_types, 9001, subType=2)
    subscribe(raw_only, all_types, 9002)
    subscribe(linkage_high, [131588], 9003, subType=1, eventLvl=[3])
    # Permission: this partner may not subscribe to 131330, and gets none of it.
    refused = acs_forbidden.post(SUBSCRIBE, {"eventTypes": [131330], "eventDest": "http://127.0.0.1:9004/"})
    assert refused.json()["code"] != "0"

    names = {
        "acs": "acs_card_196883_event_acs.json",
        "video": "video_131330_event_vss_start.json",
        "parking": "parking_771760130_entry_event_pms_SYNTHETIC.json",
        "linkage0": "linkage_event_rule_status0_SYNTHETIC.json",
        "linkage4": "linkage_event_rule_status4_update_SYNTHETIC.json",
    }
    for name in names.values():
        answer = http.post("/eventRcv", json=payload(name))
        assert answer.status_code == 200 and answer.json() == {"code": "0", "msg": "success", "data": None}

    worker = Worker(stack_settings).start()
    reader = Deliveries(stack_settings)
    try:
        partners = {p["name"]: p["id"] for p in
                    http.get("/admin/v1/partners", headers=admin_headers()).json()}
        linkage0 = payload(names["linkage0"])["params"]["events"][0]
        level = linkage0.get("eventLvl", 0)
        expected = {
            (partners["everything"], e["eventId"], e["status"])
            for key in ("acs", "video", "parking", "linkage0")
            for e in payload(names[key])["params"]["events"]
            if e["eventType"] in all_types
        }
        expected |= {
            (partners["raw-only"], e["eventId"], e["status"])
            for key in ("acs", "video", "parking")
            for e in payload(names[key])["params"]["events"]
        }
        if level == 3:
            expected.add((partners["linkage-high"], linkage0["eventId"], 0))
        got = reader.wait(len(expected))
        reader.drain(3)
        seen = {(t["partner_id"], t["event_ids"][0], t["status"]) for t in got}
        # Status 4 (linkage update) is not in the default push statuses 0,1,2: nobody gets it.
        assert seen == expected
        assert all(t["partner_id"] != partners["no-131330"] for t in got)
        for task in got:
            body = task["body"]
            assert body["method"] == "OnEventNotify" and len(body["params"]["events"]) == 1
            assert task["event_dest"].startswith("http://127.0.0.1:900")
        # The push body is what the platform sent, unknown fields included.
        acs = next(t for t in got if t["event_type"] == 196883 and t["partner_id"] == partners["raw-only"])
        original = payload(names["acs"])
        assert acs["body"]["params"]["events"][0] == original["params"]["events"][0]
        assert acs["body"]["params"]["ability"] == original["params"]["ability"]

        # FAQ 5: the operator adds status 4 at runtime; the next update is routed, no re-subscribe.
        assert http.patch("/admin/v1/settings", headers=admin_headers(),
                          json={"pushStatuses": [0, 1, 2, 4]}).status_code == 200
        before = len(got)
        # A new update (an identical re-send of the earlier one would be dropped as a duplicate).
        update = payload(names["linkage4"])
        update["params"]["events"][0]["eventId"] = "linkage-after-faq5"
        http.post("/eventRcv", json=update)
        after = reader.wait(before + 1)
        assert any(t["status"] == 4 and t["partner_id"] == partners["everything"] for t in after[before:])
    finally:
        worker.stop()
        reader.close()


def test_worker_restart_loses_nothing_and_keeps_delivery_ids(stack_settings: Settings,
                                                             http: TestClient) -> None:
    partner = make_partner(http, name="steady")
    subscribe(partner, [196883], 9010)
    template = payload("acs_card_196883_event_acs.json")

    def push(i: int, **changes: Any) -> None:
        body = json.loads(json.dumps(template))
        body["params"]["events"][0].update(eventId=f"evt-{i}", **changes)
        assert http.post("/eventRcv", json=body).status_code == 200

    reader = Deliveries(stack_settings)
    worker = Worker(stack_settings).start()
    try:
        for i in range(40):
            push(i)
        reader.wait(10)
        worker.stop()  # mid-stream: some events are routed, the rest wait in Kafka
        for i in range(40, 80):
            push(i)
        worker = Worker(stack_settings).start()
        # A report of evt-7 (same status, changed content: not an identical re-send, which
        # correlation drops) routed again after the restart.
        push(7, remark="re-sent")
        tasks = reader.wait(81)
        reader.drain(3)
    finally:
        worker.stop()
        reader.close()
    ids = {t["event_ids"][0] for t in tasks}
    assert ids == {f"evt-{i}" for i in range(80)}
    by_event: dict[str, set[str]] = {}
    for task in tasks:
        by_event.setdefault(task["event_ids"][0], set()).add(task["delivery_id"])
    # Every duplicate (the repeat, or re-routing after the restart) carries the same delivery id.
    assert all(len(v) == 1 for v in by_event.values())
    assert len([t for t in tasks if t["event_ids"][0] == "evt-7"]) >= 2


@pytest.mark.parametrize(("body", "status", "field"), [
    (b"not json", 400, "body"),
    (b'{"method": "Other", "params": {"ability": "x", "events": []}}', 400, "method"),
    (b'{"method": "OnEventNotify", "params": {"ability": "x", "events": {}}}', 400, "params.events"),
    (b'{"method": "OnEventNotify", "params": []}', 400, "params"),
])
def test_malformed_pushes_get_4xx(http: TestClient, body: bytes, status: int, field: str) -> None:
    answer = http.post("/eventRcv", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status and answer.json()["field"] == field
    assert http.get("/eventRcv").status_code == 405
    assert http.get("/healthz").status_code == 200


def test_partly_invalid_push_keeps_valid_events(stack_settings: Settings, http: TestClient) -> None:
    good = payload("acs_card_196883_event_acs.json")
    events = good["params"]["events"] + [{"eventId": "bad", "eventType": "abc", "status": 0}]
    good["params"]["events"] = events
    answer = http.post("/eventRcv", json=good)
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["accepted"] == len(events) - 1
    assert data["rejected"][0]["field"] == f"params.events[{len(events) - 1}].eventType"

    consumer = Consumer(client_config(stack_settings, **{"group.id": "rej", "auto.offset.reset": "earliest"}))
    consumer.subscribe([stack_settings.topic_prefix + "events.rejected"])
    rejected = None
    for _ in range(100):
        msg = consumer.poll(0.3)
        if msg is not None and msg.error() is None:
            rejected = json.loads(msg.value())
            break
    consumer.close()
    assert rejected and rejected["event"]["eventId"] == "bad"


def test_kafka_down_answers_503_then_recovers(broker: object, unique: Any) -> None:
    from bridge.ops.localkafka import LocalKafka

    local = LocalKafka(Settings().cache_dir, 29592)
    local.start()
    settings = Settings(kafka_bootstrap=local.bootstrap, topic_prefix=unique("down") + ".",
                        partitions=1, mode="dev", secret_key=SecretStr(Fernet.generate_key().decode()))
    ensure_topics(settings)
    body = payload("video_131330_event_vss_start.json")
    try:
        with TestClient(create_app(settings)) as client:
            assert client.post("/eventRcv", json=body).status_code == 200
            local.stop()
            down = client.post("/eventRcv", json=body)
            assert down.status_code == 503 and down.headers["Retry-After"]
            local.start()
            assert client.post("/eventRcv", json=body).status_code == 200
    finally:
        local.stop()


def test_ingest_token_and_source_allow_list(stack_settings: Settings) -> None:
    guarded = stack_settings.model_copy(update={"ingest_token": SecretStr("platform-secret"),
                                                "ingest_allow": ["10.0.0.0/8"]})
    body = payload("video_131330_event_vss_start.json")
    with TestClient(create_app(guarded)) as client:
        no_token = client.post("/eventRcv", json=body)
        assert no_token.status_code == 401 and no_token.json()["reason"] == "bad_ingest_token"
        wrong_source = client.post("/eventRcv", json=body, headers={"X-Bridge-Ingest-Token": "platform-secret"})
        assert wrong_source.status_code == 401 and wrong_source.json()["reason"] == "source_not_allowed"
    allowed = guarded.model_copy(update={"ingest_allow": []})  # TestClient's peer is not an IP
    with TestClient(create_app(allowed)) as client:
        ok = client.post("/eventRcv", json=body, headers={"X-Bridge-Ingest-Token": "platform-secret"})
        assert ok.status_code == 200


def test_recv_event_log_switched_at_runtime(http: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="bridge.ingest")
    body = payload("acs_card_196883_event_acs.json")
    http.post("/eventRcv", json=body)
    assert not [r for r in caplog.records if "recv event" in r.getMessage()]
    assert http.patch("/admin/v1/settings", headers={"Authorization": "Bearer test-admin-token"},
                      json={"recvEventLog": True}).json()["recvEventLog"] is True
    http.post("/eventRcv", json=body)
    lines = [r.getMessage() for r in caplog.records if "recv event" in r.getMessage()]
    event = body["params"]["events"][0]
    assert lines == [f"recv event eventType=196883 eventId={event['eventId']} status=0 "
                     f"srcIndex={event['srcIndex']}"]
