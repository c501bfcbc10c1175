"""Unit tests of the transactional loop's pure helpers (the loop itself runs in the broker tests)."""

from __future__ import annotations

import threading

import pytest

from bridge.processor import Hung, RestartSession, TransactionalLoop, _bounded, transactional_id
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
    assert kept["error"] == {"field": "route", "message": "KeyError: 'linkageResult'"}
    assert kept["source"] == {"topic": "t.events", "partition": 3, "offset": 41}
    assert json.loads(kept["record"]) == {"eventId": "E-1"}
