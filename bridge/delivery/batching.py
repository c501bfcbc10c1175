"""Per-partner batching (``maxBatch``): which waiting tasks share one push, and the merged push.

Pure functions over the partner's waiting tasks; ``dispatch`` calls them when a slot frees up.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import replace
from typing import Any, NamedTuple

from bridge.delivery.source import TaskRef
from bridge.events import DeliveryTask


class Waiting(NamedTuple):
    """A task waiting for a slot of its partner."""

    ref: TaskRef
    task: DeliveryTask
    #: ``delivered.task_key(task)``: what marks it as being sent.
    key: str


def _envelope_key(params: dict[str, Any]) -> Any:
    """The envelope's fields other than ``events`` and ``sendTime``, comparable with ``==``.

    Text and null values (the platform's envelope: ``ability``, ``uids``...) compare exactly as
    they are; anything else is written out as JSON first, since ``==`` takes ``1``, ``1.0`` and
    ``True`` for one value, which the partner would not.
    """
    envelope = {k: v for k, v in params.items() if k != "events" and k != "sendTime"}
    for value in envelope.values():
        if value is not None and type(value) is not str:
            return json.dumps(envelope, sort_keys=True, default=str)
    return envelope


def _batch_key(task: DeliveryTask) -> tuple[Any, ...]:
    """Tasks whose events can share one push: same destination, attempt and envelope.

    The envelope is compared without ``sendTime`` (each platform push has its own; a batch is a
    push of ours, and carries its first event's).
    """
    body = task.body
    params = body.get("params") if isinstance(body, dict) else None
    envelope = (_envelope_key(params)
                if isinstance(params, dict) and isinstance(params.get("events"), list) else None)
    return (task.event_dest, task.trigger, task.attempt, body.get("method"), envelope)


def take_batch(pending: deque[Waiting], max_events: int) -> list[Waiting]:
    """The first waiting task and the compatible ones right behind it, up to ``max_events``."""
    if not pending:
        return []
    first = pending.popleft()
    batch = [first]
    if max_events <= 1:  # a partner of one event per push: no key to compare
        return batch
    key = _batch_key(first.task)
    if key[-1] is None:  # not an OnEventNotify with a list of events: goes alone
        return batch
    events = len(first.task.event_ids)
    while pending and events < max_events:
        task = pending[0].task
        if events + len(task.event_ids) > max_events or _batch_key(task) != key:
            break
        batch.append(pending.popleft())
        events += len(task.event_ids)
    return batch


def merge_tasks(tasks: list[DeliveryTask]) -> DeliveryTask:
    """One task carrying the events of ``tasks`` in one OnEventNotify, with a delivery id of its own.

    The id is derived from the members' ids, so the same batch pushed again keeps it; the
    outcome lists every event id. A failure retries (or dead-letters) the merged task whole.
    """
    first = tasks[0]
    params = dict(first.body["params"])
    params["events"] = [event for task in tasks for event in task.body["params"]["events"]]
    body = {**first.body, "params": params}
    batch_id = hashlib.sha256("\x1f".join(["batch", *(t.delivery_id for t in tasks)]).encode()).hexdigest()[:32]
    ingested = [t.ingest_ts for t in tasks if t.ingest_ts]
    return replace(first, delivery_id=batch_id, event_ids=tuple(e for t in tasks for e in t.event_ids),
                   body=body, created_at=min(t.created_at for t in tasks),
                   ingest_ts=min(ingested) if ingested else 0.0,
                   extra={**first.extra, "batchOf": [t.delivery_id for t in tasks]})
