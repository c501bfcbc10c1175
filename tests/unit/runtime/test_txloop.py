"""Unit tests of the transactional loop's pure helpers (the loop itself runs in the broker tests)."""

from __future__ import annotations

import threading

import pytest

from bridge.events import TASK_HEADROOM
from bridge.runtime.txloop import (
    REJECTED_PREFIX,
    Hung,
    Out,
    RestartSession,
    TransactionalLoop,
    _bounded,
    transactional_id,
)
from bridge.settings import Settings


def test_bounded_returns_when_the_call_does() -> None:
    done: list[int] = []
    _bounded(lambda: done.append(1), 5, "quick")
    assert done == [1]


def test_bounded_reraises_the_calls_error_in_the_caller() -> None:
    def fail() -> None:
        raise ValueError("from librdkafka")

    with pytest.raises(ValueError, match="from librdkafka"):
        _bounded(fail, 5, "failing")


def test_bounded_gives_up_on_a_call_that_never_returns() -> None:
    release = threading.Event()
    try:
        with pytest.raises(Hung, match="stuck did not return") as caught:
            _bounded(release.wait, 0.2, "stuck")
        assert isinstance(caught.value, RestartSession)  # the loop restarts its session
    finally:
        release.set()


def test_transactional_id_is_stable_only_with_a_worker_id() -> None:
    stable = Settings(app_id="eb", worker_id="pod-7")
    assert transactional_id(stable, "route") == transactional_id(stable, "route") == "eb-route-pod-7"
    anonymous = Settings(app_id="eb")
    assert transactional_id(anonymous, "route") != transactional_id(anonymous, "route")
    assert transactional_id(anonymous, "route").startswith("eb-route-")


class _Message:
    def topic(self) -> str:
        return "t.events"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return 41

    def value(self) -> bytes:
        return b'{"eventId": "E-1"}'


class _Broken:
    changelog = None

    def process(self, message: object) -> list[object]:
        raise KeyError("linkageResult")


def test_a_record_the_stage_fails_on_is_kept_on_the_rejected_topic() -> None:
    import json

    loop = TransactionalLoop(Settings(topic_prefix="t."), "route", "t.events", _Broken())  # type: ignore[arg-type]
    [out] = loop._process(_Message())
    assert out.topic == "t.events.rejected"
    kept = json.loads(out.value)
    assert kept["error"] == {"field": "route", "reason": "exception", "message": "KeyError: 'linkageResult'"}
    assert kept["source"] == {"topic": "t.events", "partition": 3, "offset": 41}
    assert json.loads(kept["record"]) == {"eventId": "E-1"}


class _Sized:
    """Routes one source record to a small task, a task of ``size`` bytes and a state change."""

    changelog = "t.correlation"

    def __init__(self, size: int) -> None:
        self.size = size

    def process(self, message: object) -> list[Out]:
        return [Out("t.deliveries", b"p-small", b"x" * 100),
                Out("t.deliveries", b"p-big", b"x" * self.size),
                Out("t.correlation", b"E-1", b"{}", partition=3)]


def test_an_output_over_the_record_limit_is_replaced_by_its_rejected_record() -> None:
    import json

    settings = Settings(topic_prefix="t.", max_record_bytes=100_000)
    limit = settings.max_record_bytes - TASK_HEADROOM
    at_limit = TransactionalLoop(settings, "route", "t.events", _Sized(limit - len(b"p-big")))  # type: ignore[arg-type]
    assert [o.topic for o in at_limit._process(_Message())] == ["t.deliveries", "t.deliveries", "t.correlation"]

    over = TransactionalLoop(settings, "route", "t.events", _Sized(limit - len(b"p-big") + 1))  # type: ignore[arg-type]
    small, replaced, state = over._process(_Message())
    assert (small.key, state.topic) == (b"p-small", "t.correlation")  # the rest of the record goes on
    assert replaced.topic == "t.events.rejected"
    kept = json.loads(replaced.value)
    assert kept["error"]["reason"] == "record_too_large"
    assert "t.deliveries" in kept["error"]["message"] and "p-big" in kept["error"]["message"]
    assert kept["source"] == {"topic": "t.events", "partition": 3, "offset": 41}


class _HugeMessage(_Message):
    def value(self) -> bytes:
        return b"\xff" + "\ud7ff".encode() * 400_000


def test_a_rejected_record_stays_bounded_and_ascii_whatever_the_source() -> None:
    loop = TransactionalLoop(Settings(topic_prefix="t."), "analytics", "t.events", _Broken())  # type: ignore[arg-type]
    [out] = loop._process(_HugeMessage())
    assert out.value is not None and out.value.isascii()
    assert out.size() < 7 * REJECTED_PREFIX
    assert b'"recordBytes": 1200001' in out.value
