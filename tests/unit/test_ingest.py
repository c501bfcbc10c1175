"""Unit tests of bridge.ingest: orjson's fast decode gives exactly what json's decode gives.

Ingest decodes a push with orjson when that is safe (:func:`bridge.ingest.decode_push`) and with
json otherwise. Every push here goes through ``Ingest.accept`` twice, once as it runs and once
with the fast path switched off, against an in-memory producer: the answers and the records
must be the same.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bridge.ingest as ingest_module
from bridge.ingest import FAST_DECODE_MAX_BRACKETS, Ingest, decode_push
from bridge.settings import Settings


class MemoryProducer:
    """Keeps what ingest writes, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes]] = []

    async def send_many(self, records: list[Any]) -> list[tuple[int, int]]:
        self.records.extend((topic, key, value) for topic, key, value, _ in records)
        return [(0, i) for i in range(len(records))]


def _accept(body: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any]]:
    producer = MemoryProducer()
    ingest = Ingest(Settings(), producer)  # type: ignore[arg-type]
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(ingest_module, "decode_push",
                          lambda b: (b, False, b.count(b"[") + b.count(b"{")))
        try:
            result: Any = asyncio.run(ingest.accept(body))
        except Exception as exc:  # noqa: BLE001 - compared between the two paths
            result = (type(exc).__name__, str(exc), getattr(exc, "field", None))
    records = []
    for topic, key, value in producer.records:
        document = json.loads(value)
        document.pop("ingestTs", None)  # the time of each run
        document.pop("ingest_ts", None)
        records.append((topic, key, document))
    return result, records


def assert_same_both_ways(body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, slow = _accept(body, True, monkeypatch), _accept(body, False, monkeypatch)
    assert fast == slow, body[:300]


def push(*events: Any, **params: Any) -> bytes:
    text = json.dumps({"method": "OnEventNotify", "params": {
        "ability": "event_acs", "sendTime": "2026-12-01T10:00:00.000+08:00", **params,
        "events": list(events)}}, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def event(event_id: str = "e1", **fields: Any) -> dict[str, Any]:
    return {"eventId": event_id, "eventType": 196893, "status": 0, "srcIndex": "door-1", **fields}


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


ODD_PUSHES = {
    "plain": push(event("a"), event("b", data={"card": "0698", "n": [1, 2.5, None, True]})),
    "lone surrogate escape": push(event("a"), event("b")).replace(b'"b"', b'"b\\ud800"'),
    "lone surrogate bytes": push(event("a"), event("b")).replace(b'"b"', b'"b\xed\xa0\x80"'),
    "number beyond the doubles": push(event("a", x=1), event("b")).replace(b'"x": 1', b'"x": 1e400'),
    "NaN": push(event("a", x=1)).replace(b'"x": 1', b'"x": NaN'),
    "2**64 in eventType": push(event("a", eventType=2**64), event("b")),
    "-2**63-1 in a field": push(event("a", x=-(2**63) - 1), event("b")),
    "2**64-1 in a field": push(event("a", x=2**64 - 1)),
    "19-digit string": push(event("a", card="1234567890123456789")),
    "thousands of digits": push(event("a")).replace(b'"status": 0', b'"status": ' + b"9" * 5000),
    "nesting at the bound": push(event("a", data=_nested(31)), event("b", data=_nested(32))),
    "nesting near json's limit": push(event("a", data=_nested(700)), event("b")),
    # Between json's recursion limit (about 1,000 less the stack) and orjson's (1,024).
    "nesting past json's limit": push(event("a", data="DEEP"), event("b")).replace(
        b'"DEEP"', b"[" * 1000 + b"0" + b"]" * 1000),
    "params nesting": push(event("a"), uids=_nested(40)),
    "many brackets, shallow": push(*(event(f"e{i}", data={}) for i in range(FAST_DECODE_MAX_BRACKETS))),
    "byte-order mark": b"\xef\xbb\xbf" + push(event("a")),
    "UTF-16": push(event("a")).decode().encode("utf-16"),
    "a JSON string of a push": json.dumps(push(event("a")).decode()).encode(),
    "not an object": b"[1, 2]",
    "not JSON": b"not json",
    "trailing garbage": push(event("a")) + b"x",
    "duplicate keys": push(event("a")).replace(b'"status": 0', b'"status": 0, "status": 3'),
    "floats": push(event("a", f=[0.1, 1e16, 1e-7, -0.0, 1.7976931348623157e308, 5e-324])),
    "unicode": push(event("a", name="门禁 \u2028 \x00 😀")),
    "invalid UTF-8": push(event("a")).replace(b'"a"', b'"a\xff"'),
}


@pytest.mark.parametrize("name", list(ODD_PUSHES))
def test_both_decoders_give_the_same_answer_and_records(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_same_both_ways(ODD_PUSHES[name], monkeypatch)


def test_ordinary_pushes_take_the_fast_path_and_odd_ones_json() -> None:
    assert decode_push(ODD_PUSHES["plain"])[1] is True
    for name in ("lone surrogate escape", "number beyond the doubles", "2**64 in eventType",
                 "nesting near json's limit", "many brackets, shallow", "byte-order mark", "UTF-16",
                 "a JSON string of a push", "not an object", "19-digit string"):
        assert decode_push(ODD_PUSHES[name])[1] is False, name


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(st.dictionaries(st.sampled_from(["eventId", "eventType", "status", "eventLvl", "srcIndex",
                                                  "data", "x"]), JSON_VALUES, max_size=6), max_size=4),
       params=st.dictionaries(st.sampled_from(["uids", "sendTime", "y"]), JSON_VALUES, max_size=2))
def test_both_decoders_agree_on_arbitrary_pushes(events: list[dict[str, Any]], params: dict[str, Any],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for raw in events:  # mostly valid events, so that records are written and compared too
        raw.setdefault("eventId", "e")
        raw.setdefault("eventType", 196893)
        raw.setdefault("status", 0)
    assert_same_both_ways(push(*events, **params), monkeypatch)
