"""Dead-letter redrive: each letter's event goes again to its partner as the partner is now.

A letter's push body is the event as routing built it, so it is read back into an
``EventRecord`` (the ingest parser, the status the task carried) and routed with the partner's
*current* subscription and filters by replay's path (``replay.partner_tasks``): a partner that
moved its ``eventDest`` gets the event at the new URL, and a letter whose type the partner no
longer takes, or whose partner is disabled or gone, is skipped with the reason. ``destination =
"stored"`` sends the task to the URL it died at instead (only the partner's state is checked).

A redriven task keeps the letter's delivery id, is marked ``trigger="redrive"`` and carries
``extra.redrive_of`` = the letter's id, so a redrive that dies again makes a letter pointing at
the first. Every letter sent (or covered by another letter of the same redrive) is settled: a
record keyed by its id on the compacted ``bridge.deliveries.dlq.state``, written once its task
is acknowledged; later redrives leave settled letters alone unless asked. A crash between the two
writes leaves the letter dead, so it may be sent once more, with the same delivery id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bridge.errors import InvalidInput
from bridge.events import DeliveryTask, EventRecord
from bridge.feeds.replay import partner_tasks
from bridge.ingest import to_records
from bridge.kafka.producer import AsyncProducer
from bridge.platform.notify import parse_notify
from bridge.registry.view import RegistryView
from bridge.routing.matching import mismatch
from bridge.settings import Settings
from bridge.topics import topic_table

Destination = Literal["current", "stored"]
DESTINATIONS: tuple[Destination, ...] = ("current", "stored")
#: Letters planned, sent and settled per round (one progress step each).
BATCH = 200


@dataclass
class RedriveReport:
    """What one redrive did, letter by letter and counted per outcome."""

    id: str
    destination: Destination
    total: int
    #: ``sent``, ``duplicate`` (the same delivery as another letter of this redrive: settled, not
    #: sent twice) and ``skipped`` (stays dead).
    counts: Counter[str] = field(default_factory=Counter)
    #: Skipped letters per reason.
    skipped: Counter[str] = field(default_factory=Counter)
    letters: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, max_letters: int = 1000) -> dict[str, Any]:
        return {
            "id": self.id, "destination": self.destination, "total": self.total,
            "redriven": self.counts["sent"],
            "counts": {k: self.counts[k] for k in ("sent", "duplicate", "skipped")},
            "skipped": dict(sorted(self.skipped.items())),
            "letters": self.letters[:max_letters],
            "lettersOmitted": max(0, len(self.letters) - max_letters),
        }


def event_of(task: DeliveryTask) -> EventRecord:
    """The event a dead task carried, as routing saw it (InvalidInput if its body is no event)."""
    result = parse_notify(dict(task.body))
    if result.errors or len(result.valid) != 1:
        problems = "; ".join(f"{e.field}: {e.message}" for e in result.errors) or (
            f"{len(result.valid)} events in the push body, not one")
        raise InvalidInput(f"the letter's push body is not one valid event ({problems})", "body")
    (record,) = to_records(result, task.ingest_ts)
    # An attached picture is pushed as its original event, but it is the status-5 report.
    return replace(record, status=task.status)


def _decide(letter: dict[str, Any], view: RegistryView, statuses: Collection[int],
            destination: Destination, now: float) -> tuple[DeliveryTask | None, str | None]:
    """The task to send for ``letter`` now, or why none."""
    raw = dict(letter["task"])
    raw["event_ids"] = tuple(raw["event_ids"])
    stored = DeliveryTask(**raw)
    partner = view.partner(stored.partner_id)
    if partner is None:
        return None, "partner no longer exists"
    if partner.state != "active":
        return None, "partner is disabled"
    extra = {**stored.extra, "redrive_of": letter["id"]}
    if destination == "stored":
        return replace(stored, attempt=0, trigger="redrive", not_before=0.0, created_at=now,
                       extra=extra), None
    try:
        record = event_of(stored)
    except InvalidInput as exc:
        return None, str(exc)
    tasks = partner_tasks(view, partner, record, statuses, now)
    if not tasks:
        subs = [s for s in view.subscriptions_of(partner.id) if s.event_type == record.event_type]
        if not subs:
            return None, f"partner no longer subscribes to event type {record.event_type}"
        return None, mismatch(record, subs[0], partner, statuses) or "no current subscription matches"
    # The letter's id: what the partner may already have seen of this report, wherever it went.
    return replace(tasks[0], delivery_id=stored.delivery_id, trigger="redrive", extra=extra), None


async def run(settings: Settings, view: RegistryView, producer: AsyncProducer,
              letters: list[dict[str, Any]], destination: Destination = "current",
              progress: Callable[[int], None] | None = None) -> RedriveReport:
    """Redrive ``letters`` (from ``readback.dead_letters``), settle what went, report per letter."""
    if destination not in DESTINATIONS:
        raise InvalidInput(f"destination {destination!r} is not one of {', '.join(DESTINATIONS)}",
                           "destination")
    table = topic_table(settings)
    deliveries, states = table["deliveries"].name, table["deliveries.dlq.state"].name
    report = RedriveReport(uuid.uuid4().hex[:12], destination, len(letters))
    statuses: Collection[int] = view.setting("push_statuses", settings.push_statuses)
    sent_as: dict[tuple[str, str, str], str] = {}  # (partner, delivery id, URL) -> letter sent
    done = 0
    for start in range(0, len(letters), BATCH):
        now = time.time()
        tasks: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
        settled: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
        for letter in letters[start:start + BATCH]:
            task, reason = _decide(letter, view, statuses, destination, now)
            entry: dict[str, Any] = {"id": letter["id"], "partner": letter["task"]["partner_id"],
                                     "deliveryId": letter["task"]["delivery_id"]}
            if task is None:
                report.counts["skipped"] += 1
                report.skipped[str(reason)] += 1
                report.letters.append({**entry, "outcome": "skipped", "reason": reason})
                continue
            key = (task.partner_id, task.delivery_id, task.event_dest)
            via = sent_as.get(key)
            outcome = "duplicate" if via else "sent"
            if via is None:
                sent_as[key] = letter["id"]
                tasks.append((deliveries, task.partner_id.encode(), task.encode(), None))
            report.counts[outcome] += 1
            report.letters.append({**entry, "outcome": outcome, "destination": task.event_dest,
                                   **({"via": via} if via else {})})
            settled.append((states, letter["id"].encode(), _state_record(
                letter, task, outcome, via, report, now), None))
        # The tasks first: a letter is settled only once its task is in Kafka.
        if tasks:
            await producer.send_many(tasks)
        if settled:
            await producer.send_many(settled)
        done += len(letters[start:start + BATCH])
        if progress:
            progress(done)
    return report


def _state_record(letter: dict[str, Any], task: DeliveryTask, outcome: str, via: str | None,
                  report: RedriveReport, now: float) -> bytes:
    previous = letter.get("state") or {}
    return json.dumps({
        "letter": letter["id"], "deliveryId": letter["task"]["delivery_id"],
        "deadAt": letter["dead_at"], "state": "redriven", "at": now, "outcome": outcome,
        "destination": task.event_dest, "destinationMode": report.destination,
        "redrive": report.id, "times": int(previous.get("times", 0)) + 1, "via": via,
    }, ensure_ascii=False).encode()
