"""Reading the bridge's own topics back: recent outcomes, dead letters and their states.

Used by the admin API and the CLI; bounded reads with a consumer that never joins a group.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from bridge.delivery.records import decode_outcome, task_from_dead_letter
from bridge.errors import InvalidInput
from bridge.kafka.reader import TopicReader
from bridge.settings import Settings
from bridge.topics import topic_table


def scan(settings: Settings, topic: str, tail: int | None = None,
         timeout: float = 10.0, missing_ok: bool = True) -> Iterator[Any]:
    """Messages of ``topic`` up to its current end (the last ``tail`` per partition if given).

    A topic that does not exist reads as empty, or (``missing_ok=False``) raises TopicError.
    """
    with TopicReader.of(settings, topic, "readback", timeout) as reader:
        marks = reader.watermarks(reader.partitions(missing_ok))
        ranges = {p: (low if tail is None else max(low, high - tail), None)
                  for p, (low, high) in marks.items() if high > low}
        # Best effort within the caller's time: what was read by then is the answer.
        yield from reader.read(ranges, idle_s=timeout * 3)


def recent_outcomes(settings: Settings, partner_id: str | None = None, limit: int = 100,
                    per_partition: int = 5000) -> list[dict[str, Any]]:
    """The newest outcomes (all partners, or one), newest first."""
    topic = topic_table(settings)["outcomes"].name
    found = []
    for message in scan(settings, topic, tail=per_partition):
        if partner_id is not None and (message.key() or b"").decode() != partner_id:
            continue
        record = decode_outcome(message.value())
        found.append(record)
    found.sort(key=lambda r: r["attempted_at"], reverse=True)
    return [_jsonable(r) for r in found[:limit]]


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in record.items():
        out[key] = value.timestamp() if hasattr(value, "timestamp") else value
    return out


#: What a dead letter's ``state`` can be: never sent again, or settled by a redrive.
LETTER_STATES = ("dead", "redriven")


def letter_states(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest state record of every settled dead letter, by letter id."""
    topic = topic_table(settings)["deliveries.dlq.state"].name
    states: dict[str, dict[str, Any]] = {}
    for message in scan(settings, topic, missing_ok=False):
        key = (message.key() or b"").decode()
        if message.value() is None:
            states.pop(key, None)
            continue
        try:
            states[key] = json.loads(message.value())
        except ValueError:
            continue  # not written by the bridge; a letter without a state stays dead
    return states


def _state_of(letter: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    # A state counts only for the letter it was written for: a recreated dead-letter topic
    # reuses partition:offset ids, and must not inherit another letter's settlement.
    if (stored is None or stored.get("deliveryId") != letter["task"]["delivery_id"]
            or stored.get("deadAt") != letter["dead_at"]):
        return {"state": "dead"}
    return {k: v for k, v in stored.items() if k not in ("letter", "deliveryId", "deadAt")}


def dead_letters(settings: Settings, partner_id: str | None = None, since: float | None = None,
                 predicate: Callable[[dict[str, Any]], bool] | None = None,
                 state: str | None = None) -> list[dict[str, Any]]:
    """Dead letters (oldest first), each with its partition and offset as a stable ``id``.

    Each letter also carries its ``state`` (``dead``, or ``redriven`` with when, where and how
    often), ``redriveOf`` (the letter whose redrive died again as this one, if any) and
    ``diedAgainAs`` (the letters its own redrives became). ``state`` keeps only letters in it.
    """
    if state is not None and state not in LETTER_STATES:
        raise InvalidInput(f"state {state!r} is not one of {', '.join(LETTER_STATES)}", "state")
    topic = topic_table(settings)["deliveries.dlq"].name
    states = letter_states(settings)
    found = []
    children: dict[str, list[str]] = {}
    for message in scan(settings, topic):
        try:
            task, record = task_from_dead_letter(message.value())
        except (ValueError, KeyError, TypeError):
            continue  # an undecodable task kept verbatim: shown by `dlq show`, not redrivable
        letter_id = f"{message.partition()}:{message.offset()}"
        parent = task.extra.get("redrive_of") if isinstance(task.extra, dict) else None
        if parent:
            children.setdefault(str(parent), []).append(letter_id)
        if partner_id is not None and task.partner_id != partner_id:
            continue
        if since is not None and record["dead_at"] < since:
            continue
        if predicate is not None and not predicate(record):
            continue
        record["id"] = letter_id
        record["redriveOf"] = parent
        record["state"] = _state_of(record, states.get(letter_id))
        if state is not None and record["state"]["state"] != state:
            continue
        found.append(record)
    for record in found:
        record["diedAgainAs"] = children.get(record["id"], [])
    return found
