"""Immutable records that travel between stages on topics. No I/O, no framework imports.

``EventRecord`` is one platform event on ``bridge.events`` (key = eventType): the event object kept
verbatim plus what routing reads from it. ``DeliveryTask`` is one push for one partner on
``bridge.deliveries`` (key = partnerId); a retry is a copy with ``attempt + 1``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

Trigger = Literal["live", "retry", "replay", "redrive"]

#: Bytes a delivery task keeps free below ``max_record_bytes`` for what delivery adds to it when
#: it dead-letters the task (attempts, reason, the partner's last answer).
TASK_HEADROOM = 4096

#: Bytes an event record keeps free below ``max_record_bytes`` for what routing adds to make a
#: task of it (destination URL of up to 1024 characters, ids) plus :data:`TASK_HEADROOM`.
EVENT_HEADROOM = 8192


def record_size(key: bytes | None, value: bytes | None,
                headers: list[tuple[str, bytes]] | None = None) -> int:
    """What a record weighs against ``max_record_bytes``: key, value and headers."""
    return (len(key or b"") + len(value or b"")
            + sum(len(name) + len(data) for name, data in headers or ()))


def _dumps(value: Any) -> bytes:
    # allow_nan=False: a float the platform wrote as 1e400 decodes to inf, and "Infinity" is not
    # JSON a partner could parse; ingest refuses such an event instead (ValueError).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def task_json(value: Any) -> bytes:
    """JSON of what a delivery task carries, on the hot path (orjson: several times json's speed).

    Only for values ingest already accepted (finite numbers, no lone surrogates, see
    :func:`_dumps`): orjson would write NaN as null instead of refusing it. What orjson cannot
    write (an integer beyond 64 bits) goes through json, so every accepted event still carries.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return _dumps(value)


def task_loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # integers beyond 64 bits: json reads them
        return json.loads(data)


@dataclass(frozen=True)
class EventRecord:
    """One ingested platform event."""

    event_id: str
    event_type: int
    status: int
    event_lvl: int | None
    src_index: str
    #: Recognised as a linkage event at ingest (see ``bridge.notify.PlatformEvent.is_linkage``).
    linkage: bool
    #: The envelope's ``params.ability`` and ``params.sendTime``, and its other params fields.
    ability: str
    send_time: str | None
    params_extra: Mapping[str, Any]
    #: Epoch seconds when the bridge accepted the event.
    ingest_ts: float
    #: The event object exactly as the platform sent it.
    raw: Mapping[str, Any]

    def encode(self, decoded_by_orjson: bool = False) -> bytes:
        """Compact UTF-8 JSON. Raises ``UnicodeEncodeError`` for a lone surrogate and
        ``ValueError`` for a non-finite number anywhere in the event: ingest refuses both.

        ``decoded_by_orjson``: every value came from orjson's decoder, which refuses lone
        surrogates and non-finite numbers itself, so orjson may write it (:func:`task_json`:
        it would write NaN as null, and here there is none).
        """
        # Not asdict: it recurses in Python through the event's nesting and deep-copies it.
        value = {name: getattr(self, name) for name in _RECORD_FIELDS}
        return task_json(value) if decoded_by_orjson else _dumps(value)

    @classmethod
    def decode(cls, data: bytes) -> EventRecord:
        return cls(**task_loads(data))


_RECORD_FIELDS = tuple(f.name for f in fields(EventRecord))


@dataclass(frozen=True)
class DeliveryTask:
    """One push to one partner destination."""

    delivery_id: str
    partner_id: str
    event_dest: str
    event_ids: tuple[str, ...]
    event_type: int
    status: int
    #: The ``OnEventNotify`` message the partner would have received from the platform.
    body: Mapping[str, Any]
    created_at: float
    attempt: int = 0
    trigger: Trigger = "live"
    #: Earliest time (epoch s) the next attempt may run; 0 = at once.
    not_before: float = 0.0
    #: Timestamp of the first attempt's event ingest, for end-to-end latency.
    ingest_ts: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def encode(self, body_json: bytes | None = None) -> bytes:
        """``body_json``: the body already written (routing writes one event's body once for
        all the partners it goes to)."""
        # Not dataclasses.asdict: it deep-copies the push body, 7x the cost of this (measured in
        # bench/: 117 us against 17 us per task), and the bytes are the same.
        head = task_json({name: getattr(self, name) for name in _TASK_FIELDS})
        return b"".join((head[:-1], b',"body":', body_json or task_json(self.body), b"}"))

    @classmethod
    def decode(cls, data: bytes) -> DeliveryTask:
        raw = task_loads(data)
        raw["event_ids"] = tuple(raw["event_ids"])
        return cls(**raw)


def encode_tasks(tasks: list[DeliveryTask]) -> list[bytes]:
    """Each task's record; a body shared by several tasks (one event, several partners) is
    written once."""
    bodies: dict[int, bytes] = {}
    out = []
    for task in tasks:
        body = bodies.get(id(task.body))
        if body is None:
            body = bodies[id(task.body)] = task_json(task.body)
        out.append(task.encode(body))
    return out


_TASK_FIELDS = tuple(f.name for f in fields(DeliveryTask) if f.name != "body")


def delivery_id(partner_id: str, record: EventRecord) -> str:
    """Deterministic: the same report of an event to the same partner gets the same id.

    Built from what identifies one report of one event (eventId, eventType, status) and who gets
    it, so a platform re-send, a worker restart, a replay or a redrive all reuse the id and a
    partner can drop duplicates by ``X-Bridge-Delivery-Id``. The destination is left out: a
    partner that moves its endpoint keeps its ids (its dedupe store outlives a URL change), and
    every outcome records the destination it was pushed to.
    """
    basis = f"{partner_id}\x1f{record.event_id}\x1f{record.event_type}\x1f{record.status}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]
