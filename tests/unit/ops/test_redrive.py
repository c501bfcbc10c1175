"""Unit tests of bridge.ops.redrive's pure part: a dead task's push body read back into its event."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.errors import InvalidInput
from bridge.events import DeliveryTask, EventRecord
from bridge.ingest import to_records
from bridge.ops.redrive import event_of
from bridge.platform.notify import parse_notify
from bridge.registry.models import DeliveryPrefs, Partner, Subscription
from bridge.routing.correlation import merged_body, picture_body
from bridge.routing.matching import route

PAYLOADS = Path(__file__).resolve().parents[3] / "bridge" / "resources" / "payloads"
FILES = sorted(p.name for p in PAYLOADS.glob("*.json"))
ALL_STATUSES = [0, 1, 2, 3, 4, 5]


def record(name: str, ingest_ts: float = 1_700_000_000.5) -> EventRecord:
    (only,) = to_records(parse_notify(PAYLOADS.joinpath(name).read_bytes()), ingest_ts)
    return only


def dead_task(event: EventRecord) -> DeliveryTask:
    """The task routing made for ``event``, as a dead letter stores it (JSON and back)."""
    partner = Partner(id="p", name="P", user_id="u", app_key="k", secrets=(), event_types=None,
                      state="active", delivery=DeliveryPrefs())
    sub = Subscription(partner_id="p", event_type=event.event_type, event_dest="http://x/1",
                       sub_type=2, event_lvl=(0, 1, 2, 3))
    (task,) = route(event, [sub], {"p": partner}, ALL_STATUSES, 5.0)
    return DeliveryTask.decode(task.encode())


@pytest.mark.parametrize("name", FILES)
def test_a_dead_task_reads_back_into_the_event_routing_saw(name: str) -> None:
    event = record(name)
    assert event_of(dead_task(event)) == event


def test_an_attached_picture_reads_back_as_the_status_5_report() -> None:
    original = record("parking_771760130_entry_event_pms_SYNTHETIC.json")
    picture_raw = {**original.raw, "status": 5, "data": {"picUrl": "http://pics/1.jpg"}}
    picture = replace(original, status=5, raw=picture_raw)
    task = dead_task(picture)
    attached = replace(task, body=picture_body(task, original.raw, picture_raw))
    assert attached.body["params"]["events"][0]["status"] == original.raw["status"]
    back = event_of(DeliveryTask.decode(attached.encode()))
    assert back.status == 5 and back.event_id == original.event_id
    assert back.raw["bridgeUpdate"]["type"] == "picture"


def test_a_merged_linkage_event_reads_back_as_a_linkage_event_with_its_result() -> None:
    start = record("linkage_event_rule_status0_SYNTHETIC.json")
    update = record("linkage_event_rule_status4_update_SYNTHETIC.json")
    task = dead_task(start)
    merged = replace(task, body=merged_body(task, update.raw))
    back = event_of(DeliveryTask.decode(merged.encode()))
    assert back.linkage and back.status == 0 and back.raw["bridgeMerged"] is True


def test_a_body_that_is_no_event_is_a_clear_error() -> None:
    task = dead_task(record("acs_card_196883_event_acs.json"))
    broken = json.loads(json.dumps(task.body))
    broken["params"]["events"][0]["eventType"] = "not-a-number"
    with pytest.raises(InvalidInput, match="not one valid event.*eventType"):
        event_of(replace(task, body=broken))
