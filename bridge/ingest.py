"""Ingest: a platform push becomes one record per event on ``bridge.events`` (key = eventType).

Policy for a push with some invalid events: the valid ones are accepted and the invalid ones are
written, with the reason, to ``bridge.events.rejected``; the answer is 200 (so the platform does not
re-send the valid events forever) and names every rejected event in ``data.rejected``. A push whose
envelope is unusable (not JSON, wrong method, ``events`` not a list) is refused whole with a 4xx.
Nothing is acknowledged before Kafka has acknowledged it.

An event is accepted only if every stage can carry it end to end, so that nothing ingest takes
can later stop a stage: its record must encode (no lone surrogate, no non-finite number), fit
``max_record_bytes`` with room for what routing and delivery add (``events.EVENT_HEADROOM``), and
what it copies from ``params`` must stay within the push's budget (:func:`params_problem`).
Each rejected event gives one entry in the answer, one rejected record and, at most, one log line
(throttled).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bridge.events import EVENT_HEADROOM, EventRecord
from bridge.kafka.producer import AsyncProducer
from bridge.logfilters import Throttle
from bridge.platform.notify import ParseResult, PlatformEvent, parse_notify
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.ingest")

#: Largest ``params`` without ``events`` (compact JSON): every event record carries a copy, so
#: partners receive the envelope exactly as the platform sent it.
MAX_PARAMS_BYTES = 16_384

#: The copies of ``params`` a push's event records hold together may reach the push's own size,
#: or this many bytes for small pushes: bytes written per push stay a small multiple of its size.
PARAMS_COPY_FLOOR = 65_536

#: A rejected event larger than this is kept as a prefix of its JSON text (its record must fit).
REJECTED_EVENT_PREFIX = 65_536

#: Rejected events listed in the answer's ``data.rejected``; ``data.rejectedCount`` has them all.
MAX_REJECTED_LISTED = 100

#: Bytes of rejected records one push may write, one record per event: four times the push, or
#: 1 MiB for small pushes. Past it (a megabyte of ``{}``), the rest of the push's rejected events
#: are kept together in one record, as a prefix of their JSON text.
REJECTED_BYTES_FLOOR = 1_048_576

_throttle = Throttle(lines=10, per_s=10.0)

#: Bodies with more ``[`` and ``{`` than this are decoded by json only. Below it no value nests
#: deep enough to reach json's recursion limit (about 900 levels under the server) or orjson's
#: (1,024), so both decoders take or refuse the same bodies.
FAST_DECODE_MAX_BRACKETS = 512

# 19 digits in a row: possibly an integer outside [-2**63, 2**64), which orjson turns into a
# float where json keeps it exact (and ingest refuses it per event, by value). Looked for as 19
# zeros once every digit is a zero: ten times faster than a regular expression.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def decode_push(body: bytes) -> tuple[Any, bool, int]:
    """The push's JSON object decoded by orjson, ``(document, True, brackets)``, when that gives
    exactly what ``parse_notify``'s json decoder gives; else ``(body, False, brackets)`` for json
    to decode. ``brackets``: the count of ``[`` and ``{`` in the body, a bound of its nesting.

    orjson refuses what json would let through only to have ingest refuse it per event (lone
    surrogates, numbers beyond the double range, UTF-16/32 and byte-order marks): those bodies
    take json's path, so every per-event rule and message stays json's. Integers beyond 64 bits
    and bodies nesting near the decoders' limits are kept off orjson before it runs (above).
    """
    brackets = body.count(b"[") + body.count(b"{")
    if brackets > FAST_DECODE_MAX_BRACKETS or _LONG_DIGITS in body.translate(_DIGITS_TO_ZERO):
        return body, False, brackets
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body, False, brackets
    # Only an object: a JSON string would be taken by parse_notify as JSON text once more.
    return (document, True, brackets) if isinstance(document, dict) else (body, False, brackets)


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def params_problem(params_extra: Mapping[str, Any], events: int, body_bytes: int) -> str | None:
    """Why ``params`` (without ``events``) cannot be copied into ``events`` records, or None."""
    if not params_extra:
        return None
    try:
        size = len(_compact(params_extra))
    except UnicodeEncodeError as exc:
        return f"params holds a lone surrogate {exc.object[exc.start]!r}, which is not valid Unicode"
    except ValueError:
        return "params holds a number JSON cannot carry (beyond the double range, such as 1e400)"
    except RecursionError:
        return "params nests too deeply"
    if size > MAX_PARAMS_BYTES:
        return f"params without events is {size} bytes; at most {MAX_PARAMS_BYTES} are carried"
    budget = max(body_bytes, PARAMS_COPY_FLOOR)
    if size * events > budget:
        return (f"params without events ({size} bytes) copied into each of {events} event records "
                f"would write {size * events} bytes, more than {budget}")
    return None


def encoding_problem(exc: Exception) -> str:
    """The reason an event's record did not encode, for the platform's operator."""
    if isinstance(exc, UnicodeEncodeError):
        return (f"event holds a lone surrogate {exc.object[exc.start]!r}: not valid Unicode, so it "
                "cannot be carried to partners, Kafka keys or the Avro feed")
    if isinstance(exc, ValueError):
        return "event holds a number JSON cannot carry (beyond the double range, such as 1e400)"
    return f"event cannot be encoded ({type(exc).__name__})"


def to_record(event: PlatformEvent, result: ParseResult, now: float) -> EventRecord:
    notify = result.notify
    return EventRecord(
        event_id=event.event_id,
        event_type=event.event_type,
        status=event.status,
        event_lvl=event.event_lvl,
        src_index=event.src_index,
        linkage=event.is_linkage(notify.ability),
        ability=notify.ability,
        send_time=notify.send_time,
        params_extra=dict(notify.params_extra),
        ingest_ts=now,
        raw=dict(event.raw),
    )


def to_records(result: ParseResult, now: float) -> list[EventRecord]:
    """The records of every valid event of ``result`` (without ingest's carry checks)."""
    return [to_record(event, result, now) for event in result.valid]


def rejected_record(event: Any, problems: list[tuple[str, str]], now: float) -> bytes:
    """One rejected event with every problem found in it; always encodable, always bounded.

    ASCII JSON, so a lone surrogate survives as its escape; an event too large (or too odd) to
    keep whole is kept as a prefix of its JSON text with its size.
    """
    field, message = problems[0]
    record: dict[str, Any] = {
        "error": {"field": field, "message": "; ".join(m for _, m in problems)},
        "errors": [{"field": f, "message": m} for f, m in problems],
        "event": event, "ingestTs": now,
    }
    try:
        data = json.dumps(record, ensure_ascii=True).encode()
    except (ValueError, RecursionError):
        data = b""
    if data and len(data) <= REJECTED_EVENT_PREFIX + 16_384:
        return data
    try:
        text = json.dumps(event, ensure_ascii=True)
    except (ValueError, RecursionError):
        text = ""
    record.update(event=None, eventBytes=len(text), eventPrefix=text[:REJECTED_EVENT_PREFIX])
    return json.dumps(record, ensure_ascii=True).encode()


def overflow_record(indexes: list[int], events: list[Any], budget: int, now: float) -> bytes:
    """The rejected events of a push past its rejected-record budget, together in one record."""
    try:
        text = json.dumps(events, ensure_ascii=True)
    except (ValueError, RecursionError):
        text = ""
    return json.dumps({
        "error": {"field": "params.events", "message": (
            f"{len(indexes)} more rejected events of this push (indexes {indexes[0]} to "
            f"{indexes[-1]}) kept together: the push's {budget} bytes of rejected records were spent")},
        "eventsBytes": len(text), "eventsPrefix": text[:REJECTED_EVENT_PREFIX], "ingestTs": now,
    }, ensure_ascii=True).encode()


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    #: Every rejected event, in push order (the answer lists the first MAX_REJECTED_LISTED).
    rejected: list[dict[str, object]]


class Ingest:
    """Parses pushes and writes them to Kafka, answering only after Kafka acknowledged."""

    def __init__(self, settings: Settings, producer: AsyncProducer) -> None:
        table = topic_table(settings)
        self.events_topic = table["events"].name
        self.rejected_topic = table["events.rejected"].name
        self.producer = producer
        #: Largest event record accepted: routed, it becomes a task with a destination URL and
        #: ids, and dead-lettered it gains the attempts' story; both must still fit.
        self.max_event_bytes = settings.max_record_bytes - EVENT_HEADROOM

    async def accept(self, body: bytes, log_events: bool = False) -> IngestResult:
        document, by_orjson, brackets = decode_push(body)
        # raises InvalidInput for an unusable envelope
        result = parse_notify(document, nesting_bound=brackets)
        now = time.time()
        problems: dict[int, list[tuple[str, str]]] = {}
        for error in result.errors:
            problems.setdefault(error.index, []).append((error.field, error.message))
        total = len(result.valid) + len(problems)
        valid_indexes = [i for i in range(total) if i not in problems]
        params_reason = params_problem(result.notify.params_extra, len(result.valid), len(body))

        batch: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = []
        accepted: list[EventRecord] = []
        for index, event in zip(valid_indexes, result.valid, strict=True):
            where = f"params.events[{index}]"
            if params_reason is not None:
                problems[index] = [("params", params_reason)]
                continue
            record = to_record(event, result, now)
            try:
                data = record.encode(decoded_by_orjson=by_orjson)
            except Exception as exc:  # noqa: BLE001 - any event that cannot be stored is refused
                problems[index] = [(where, encoding_problem(exc))]
                continue
            key = str(record.event_type).encode()
            if len(data) + len(key) > self.max_event_bytes:
                problems[index] = [(where, (
                    f"event is {len(data) + len(key)} bytes once stored; at most "
                    f"{self.max_event_bytes} can be routed and delivered (BRIDGE_MAX_RECORD_BYTES "
                    f"less {EVENT_HEADROOM} for what routing and delivery add)"))]
                continue
            batch.append((self.events_topic, key, data, None))
            accepted.append(record)

        rejected_indexes = sorted(problems)
        rejected = [{"index": index, "field": problems[index][0][0],
                     "message": "; ".join(m for _, m in problems[index])} for index in rejected_indexes]
        raw_events = result.raw_events
        budget, spent = max(4 * len(body), REJECTED_BYTES_FLOOR), 0
        overflow: list[int] = []
        for index in rejected_indexes:
            if spent > budget:
                overflow.append(index)
                continue
            value = rejected_record(raw_events[index], problems[index], now)
            spent += len(value)
            batch.append((self.rejected_topic, None, value, None))
        if overflow:
            batch.append((self.rejected_topic, None, overflow_record(
                overflow, [raw_events[i] for i in overflow], budget, now), None))
        await self.producer.send_many(batch)
        if log_events:
            for r in accepted:
                log.info("recv event eventType=%s eventId=%s status=%s srcIndex=%s",
                         r.event_type, r.event_id, r.status, r.src_index)
        if rejected:
            _throttle(log.warning, "rejected %d of %d events of a push (first: %s: %.200s)",
                      len(rejected), total, rejected[0]["field"], rejected[0]["message"])
        return IngestResult(len(accepted), rejected)
