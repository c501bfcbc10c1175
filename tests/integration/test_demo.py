"""The demo's live table counts this run's events only (a previous run's retries are not counted)."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Producer

from bridge.delivery.records import encode_outcome, outcome
from bridge.delivery.result import SendResult
from bridge.events import DeliveryTask
from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import client_config
from bridge.ops.demo import PARTNERS, Demo, LiveCounts, Receiver
from bridge.settings import Settings
from bridge.topics import topic_table
from tests.fixtures.processes import start_api
from tests.fixtures.stack import ADMIN, stack_settings

pytestmark = pytest.mark.integration


def _task(event_id: str) -> DeliveryTask:
    return DeliveryTask(delivery_id=f"d-{event_id}", partner_id="p-demo", event_dest="http://127.0.0.1:1/x",
                        event_ids=(event_id,), event_type=196883, status=0,
                        body={"method": "OnEventNotify", "params": {"events": [{"eventId": event_id}]}},
                        created_at=time.time(), ingest_ts=time.time())


def _write(producer: Producer, settings: Settings, event_id: str, result: str) -> None:
    table = topic_table(settings)
    task = _task(event_id)
    producer.produce(table["deliveries"].name, key=b"p-demo", value=task.encode())
    kind = SendResult.delivered(200, 0.01) if result == "delivered" else SendResult.dead("http_410", "gone")
    value, headers = encode_outcome(outcome(replace(task, trigger="retry"), kind, result, time.time(), None))
    producer.produce(table["outcomes"].name, key=b"p-demo", value=value, headers=headers)
    assert producer.flush(10) == 0


def test_live_counts_only_this_runs_events(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"partitions": 2})
    ensure_topics(settings)
    producer = Producer(client_config(settings))
    _write(producer, settings, "old-1", "dead")  # a previous run's, before this run started
    started = time.time()
    sent = {"new-1", "new-2"}
    counts = LiveCounts(settings, sent, started)
    try:
        _write(producer, settings, "old-2", "dead")  # a previous run's retry, finishing now
        _write(producer, settings, "new-1", "delivered")
        _write(producer, settings, "new-2", "dead")
        deadline = time.monotonic() + 30
        while counts.routed["p-demo"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        while sum(counts.results.values()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        counts.stop()
    assert counts.routed == {"p-demo": 2}
    assert counts.results == {("p-demo", "delivered"): 1, ("p-demo", "dead"): 1}


async def test_receiver_counts_only_this_runs_events() -> None:
    receiver = Receiver(sent={"new-1"})
    healthy = next(p for p in PARTNERS if not p.down and not p.failure_rate)
    async with TestClient(TestServer(receiver.app())) as client:
        for event_id in ("old-1", "new-1", "old-2"):
            answer = await client.post(healthy.path, json={"method": "OnEventNotify",
                                                            "params": {"events": [{"eventId": event_id}]}})
            assert answer.status == 200  # an earlier run's push is accepted, just not counted
    assert receiver.received == {healthy.name: 1}


async def test_demo_onboards_its_partners_and_a_second_run_reuses_them(kafka_settings: Settings,
                                                                       tmp_path: Path) -> None:
    settings = stack_settings(kafka_settings)
    api, url = start_api(settings, tmp_path)
    try:
        host, port = url.removeprefix("http://").split(":")
        demo_settings = settings.model_copy(update={"http_host": host, "http_port": int(port)})
        from rich.console import Console

        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            runs = []
            for _ in range(2):  # the second run re-keys the partners the first one created
                demo = Demo(demo_settings, Console(file=io.StringIO()))
                for partner in PARTNERS:
                    await demo._subscribe(client, partner)
                runs.append(demo.partner_ids)
            listed = (await client.get("/admin/v1/partners", headers=ADMIN)).json()
            shown = {p["name"]: (await client.get(f"/admin/v1/partners/{p['id']}", headers=ADMIN)).json()
                     for p in listed}
    finally:
        api.stop()
    assert runs[0] == runs[1] and sorted(runs[0].values()) == sorted(p.name for p in PARTNERS)
    assert sorted(shown) == sorted(p.name for p in PARTNERS)
    for partner in PARTNERS:
        answer = shown[partner.name]
        assert answer["state"] == "active" and len(answer["secretRotation"]) == 2
        assert answer["delivery"]["pushStatuses"] == (list(partner.push_statuses) if partner.push_statuses
                                                      else None)
        [detail] = answer["subscriptions"]["detail"]
        assert detail["eventDest"].endswith(partner.path) and detail["subType"] == partner.sub_type
        assert sorted(detail["eventTypes"]) == sorted(set(partner.types))
