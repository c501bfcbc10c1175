"""Correlating the statuses of one eventId: dedupe, merged linkage, attached pictures, lifecycle.

The platform reports one occurrence several times under one ``eventId`` (seed FAQ 2, 3, 5): a
start and its stop, a linkage event and its status-4 result update, a parking event and its
status-5 picture. This module is pure: ``correlate`` takes the eventId's state (a JSON-able dict
kept by ``router.Router``, changelogged in ``bridge.correlation``) and an event with the tasks
routing made for it, and returns the new state, the tasks to send now and a lifecycle record.
``expire`` releases held events whose wait ran out and drops state past its TTL.

Per partner (``DeliveryPrefs``):
- ``linkage_mode = "separate"`` (default, the platform's behaviour): status 0 and status 4 are
  pushed as they come (4 only if the partner's push statuses include it).
- ``linkage_mode = "merged"``: a linkage status 0 is held up to ``merge_wait_s`` for its status 4
  and pushed once, with the ``linkageResult`` added (and ``"bridgeMerged": true``). If no update
  comes in time, the status 0 goes alone and a late status 4 is pushed as its own update.
- ``picture_mode = "attach"``: a status 5 (when the partner takes status 5) is pushed as an update
  of the original event, with ``"bridgeUpdate": {"type": "picture", ...}`` and ``pictureUrls``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.events import DeliveryTask, EventRecord
from bridge.registry.models import Partner

#: Most linkage results (the latest) and picture URLs kept per eventId: the platform may report
#: one eventId without end, and its state must stay one bounded changelog record.
MAX_LINKAGE_RESULTS = 8
MAX_PICTURES = 64


def _pictures(known: list[str], value: Any) -> list[str]:
    return sorted(set(known) | set(_urls(value)))[:MAX_PICTURES]


def content_hash(record: EventRecord) -> str:
    """What makes two reports the same report: status and the event object's content."""
    canonical = json.dumps(record.raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{record.status}\x1f{canonical}".encode()).hexdigest()[:24]


def new_state(record: EventRecord, partition: int) -> dict[str, Any]:
    return {"eventId": record.event_id, "eventType": record.event_type, "srcIndex": record.src_index,
            "partition": partition, "first": record.ingest_ts, "last": record.ingest_ts,
            "hashes": [], "statuses": [], "start": None, "stop": None, "pulses": 0,
            "linkage": [], "pictures": [], "original": None, "held": {}, "released": []}


@dataclass
class Step:
    """What to do after one event."""

    state: dict[str, Any]
    send: list[DeliveryTask] = field(default_factory=list)
    duplicate: bool = False


def _urls(value: Any) -> Iterator[str]:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _urls(item)


def _linkage_result(raw: Mapping[str, Any]) -> Any:
    if raw.get("linkageResult") is not None:
        return raw["linkageResult"]
    data = raw.get("data")
    return data.get("linkageResult") if isinstance(data, Mapping) else None


def merged_body(held: DeliveryTask, update_raw: Mapping[str, Any]) -> dict[str, Any]:
    """The held status-0 push with the status-4 linkage result added."""
    body = copy.deepcopy(dict(held.body))
    event = body["params"]["events"][0]
    event["linkageResult"] = _linkage_result(update_raw)
    event["bridgeMerged"] = True
    return body


def picture_body(task: DeliveryTask, original: Mapping[str, Any], picture_raw: Mapping[str, Any]) -> dict[str, Any]:
    """A status-5 picture as an update of the original event, marked as such."""
    body = copy.deepcopy(dict(task.body))
    event = copy.deepcopy(dict(original))
    event["pictureUrls"] = sorted(set(_urls(picture_raw.get("data"))))
    event["bridgeUpdate"] = {"type": "picture", "status": picture_raw.get("status"),
                             "happenTime": picture_raw.get("happenTime"), "data": picture_raw.get("data")}
    body["params"]["events"] = [event]
    return body


def correlate(state: dict[str, Any] | None, record: EventRecord, tasks: list[DeliveryTask],
              partners: Mapping[str, Partner], partition: int, now: float) -> Step:
    """Apply one event to its eventId's state; decide which tasks go out now."""
    state = copy.deepcopy(state) if state else new_state(record, partition)
    digest = content_hash(record)
    if digest in state["hashes"]:
        return Step(state, [], duplicate=True)  # the platform re-sent an identical report
    state["hashes"] = (state["hashes"] + [digest])[-32:]
    state["last"] = max(state["last"], record.ingest_ts)
    if record.status not in state["statuses"]:
        state["statuses"].append(record.status)
    if record.status == 1 and state["start"] is None:
        state["start"] = record.ingest_ts
    if record.status == 2:
        state["stop"] = record.ingest_ts
    if record.status == 3:
        state["pulses"] += 1
    if record.status in (0, 1) and state["original"] is None:
        state["original"] = dict(record.raw)
    if record.status == 4 and _linkage_result(record.raw) is not None:
        linkage = json.dumps(_linkage_result(record.raw), ensure_ascii=False, separators=(",", ":"))
        state["linkage"] = (state["linkage"] + [linkage])[-MAX_LINKAGE_RESULTS:]
        state["pictures"] = _pictures(state["pictures"], _linkage_result(record.raw))
    if record.status == 5:
        state["pictures"] = _pictures(state["pictures"], record.raw.get("data"))

    send: list[DeliveryTask] = []
    for task in tasks:
        partner = partners.get(task.partner_id)
        prefs = partner.delivery if partner else None
        if prefs is not None and prefs.linkage_mode == "merged" and record.linkage:
            held = state["held"].get(task.partner_id)
            if record.status == 0:
                if state["linkage"]:  # the update came first: merge at once
                    update = {"linkageResult": json.loads(state["linkage"][-1])}
                    send.append(replace(task, body=merged_body(task, update)))
                else:
                    state["held"][task.partner_id] = {"task": task.encode().decode(),
                                                      "deadline": now + prefs.merge_wait_s}
                continue
            if record.status == 4 and held is not None:
                held_task = DeliveryTask.decode(held["task"].encode())
                send.append(replace(held_task, body=merged_body(held_task, record.raw), created_at=now))
                del state["held"][task.partner_id]
                continue
            # A late update (the status 0 already went alone) is pushed as its own push.
        if (prefs is not None and prefs.picture_mode == "attach" and record.status == 5
                and state["original"] is not None):
            send.append(replace(task, body=picture_body(task, state["original"], record.raw)))
            continue
        send.append(task)
    return Step(state, send)


def expire(state: dict[str, Any], now: float, ttl_s: float) -> tuple[dict[str, Any] | None, list[DeliveryTask]]:
    """Release held events past their wait (they go alone); drop the state past its TTL."""
    release: list[DeliveryTask] = []
    held = dict(state["held"])
    for partner_id, entry in list(held.items()):
        if entry["deadline"] <= now:
            release.append(DeliveryTask.decode(entry["task"].encode()))
            del held[partner_id]
    if release:
        state = {**state, "held": held}
    if now - state["last"] > ttl_s and not state["held"]:
        return None, release
    return state, release


def lifecycle(state: Mapping[str, Any]) -> dict[str, Any]:
    """The Avro lifecycle record (``schemas/lifecycle.avsc``) of an eventId's state."""
    start, stop = state["start"], state["stop"]
    statuses = state["statuses"]
    return {
        "event_id": state["eventId"],
        "event_type": state["eventType"],
        "src_index": state["srcIndex"],
        "first_seen": int(state["first"] * 1000),
        "last_seen": int(state["last"] * 1000),
        "stop_time": int(stop * 1000) if stop is not None else None,
        "duration_ms": int((stop - start) * 1000) if start is not None and stop is not None else None,
        "statuses": list(statuses),
        "pulses": state["pulses"],
        "linkage_results_json": list(state["linkage"]),
        "picture_urls": list(state["pictures"]),
        "complete": (2 in statuses) if 1 in statuses else bool(statuses),
    }
