"""Unit tests of the routing handler's state keeping (bridge.routing.router.Router), without Kafka.

The transactional loop hands the handler source records and takes its outputs; these tests play
the loop's part: they feed records, read the outputs, and rebuild a second handler from the
changelog outputs the way a restarted worker would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.events import DeliveryTask
from bridge.registry.models import DeliveryPrefs, Partner, Subscription
from bridge.routing.router import Router
from bridge.runtime.txloop import Out, TransactionalLoop
from bridge.settings import Settings
from tests.fixtures.builders import INTRUSION, linkage_event, partner, raw_event, sub

SETTINGS = Settings(topic_prefix="t.", partitions=2, correlation_max_entries=10,
                    correlation_ttl_hours=1.0)


class FakeView:
    def __init__(self, partners: list[Partner], subs: list[Subscription]) -> None:
        self.partners = {p.id: p for p in partners}
        self.subs = subs

    def setting(self, name: str, default: Any = None) -> Any:
        return default

    def by_event_type(self, event_type: int) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subs if s.event_type == event_type)


class Message:
    def __init__(self, value: bytes, partition: int = 0, offset: int = 0, key: bytes = b"1") -> None:
        self._value, self._partition, self._offset, self._key = value, partition, offset, key

    def key(self) -> bytes:
        return self._key

    def topic(self) -> str:
        return "t.events"

    def value(self) -> bytes:
        return self._value

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


def merged(pid: str = "p-m", wait: float = 10.0) -> Partner:
    p = partner(pid, push_statuses=(0, 1, 2, 4))
    # model_construct: a test may set a wait beyond the admin API's bound (an hour), so that the
    # router's TTL, not the wait, decides.
    prefs = DeliveryPrefs.model_construct(push_statuses=(0, 1, 2, 4), linkage_mode="merged",
                                          merge_wait_s=wait)
    return p.model_copy(update={"delivery": prefs})


def router(*partners: Partner, sub_type: int = 0) -> Router:
    subs = [sub(p.id, INTRUSION, sub_type=sub_type) for p in partners]
    r = Router(SETTINGS, FakeView(list(partners), subs))  # type: ignore[arg-type]
    r.restore(0, {})
    r.restore(1, {})
    return r


def tasks(outs: list[Out]) -> list[DeliveryTask]:
    return [DeliveryTask.decode(o.value) for o in outs if o.topic == "t.deliveries" and o.value]


def changelog(outs: list[Out]) -> list[Out]:
    return [o for o in outs if o.topic == "t.correlation"]


def replay_changelog(outs: list[Out], partition: int = 0) -> dict[bytes, bytes]:
    """What a restarted worker restores: the latest value per key, tombstones removed."""
    table: dict[bytes, bytes] = {}
    for o in changelog(outs):
        assert o.partition == partition and o.key is not None
        if o.value is None:
            table.pop(o.key, None)
        else:
            table[o.key] = o.value
    return table


def test_each_routed_event_writes_tasks_state_and_lifecycle_on_its_partition() -> None:
    r = router(partner("p-a"), partner("p-b"))
    outs = r.process(Message(raw_event(event_id="E-1").encode(), partition=1))
    assert sorted(t.partner_id for t in tasks(outs)) == ["p-a", "p-b"]
    [state] = changelog(outs)
    assert state.key == b"E-1" and state.partition == 1
    assert [o.topic for o in outs].count("t.lifecycle") == 1


def test_identical_resend_is_a_duplicate_even_after_a_restart() -> None:
    r = router(partner("p-a"))
    first = r.process(Message(raw_event(event_id="E-2").encode()))
    assert len(tasks(first)) == 1
    assert r.process(Message(raw_event(event_id="E-2").encode())) == []
    restarted = router(partner("p-a"))
    restarted.restore(0, replay_changelog(first))
    assert restarted.process(Message(raw_event(event_id="E-2").encode())) == []
    assert len(tasks(restarted.process(Message(raw_event(event_id="E-2", status=1).encode())))) == 1


def test_merged_hold_survives_a_restart_and_is_sent_once() -> None:
    r = router(merged(), sub_type=2)
    held = r.process(Message(linkage_event(status=0, event_id="L-1").encode()))
    assert tasks(held) == []  # held for its status 4
    restarted = router(merged(), sub_type=2)
    restarted.restore(0, replay_changelog(held))
    update = restarted.process(Message(linkage_event(status=4, event_id="L-1").encode()))
    [push] = tasks(update)
    event = push.body["params"]["events"][0]
    assert event["status"] == 0 and event["bridgeMerged"] is True and event["linkageResult"]
    assert tasks(restarted.tick(float("inf"))) == []  # nothing left to release


def test_tick_releases_a_held_event_when_its_wait_runs_out() -> None:
    r = router(merged(wait=5.0), sub_type=2)
    held = r.process(Message(linkage_event(status=0, event_id="L-2").encode()))
    assert b'"p-m"' in replay_changelog(held)[b"L-2"]  # the held task is in the state
    assert tasks(r.tick(0.0)) == []  # not yet
    released = r.tick(10**12)
    [alone] = tasks(released)
    assert alone.status == 0 and "bridgeMerged" not in alone.body["params"]["events"][0]
    assert tasks(r.tick(10**12)) == []  # released once


def test_bound_releases_the_least_recently_updated_event_ids() -> None:
    r = router(partner("p-a"))  # cap: 10 entries over 2 partitions = 5 per partition
    outs: list[Out] = []
    for i in range(8):
        outs += r.process(Message(raw_event(event_id=f"B-{i}").encode()))
    table = replay_changelog(outs)
    assert sorted(table) == [f"B-{i}".encode() for i in range(3, 8)]
    assert len(r.states[0]) == 5


def test_ttl_drops_state_with_a_tombstone() -> None:
    r = router(partner("p-a"))
    outs = r.process(Message(raw_event(event_id="T-1").encode()))
    assert r.tick(0.0) == []
    expired = r.tick(10**12)
    assert [(o.key, o.value) for o in changelog(expired)] == [(b"T-1", None)]
    assert replay_changelog(outs + expired) == {}
    assert len(tasks(r.process(Message(raw_event(event_id="T-1").encode())))) == 1  # new again


def test_revoked_partition_is_forgotten() -> None:
    r = router(partner("p-a"))
    r.process(Message(raw_event(event_id="R-1").encode(), partition=1))
    r.revoke(1)
    assert 1 not in r.states and r.tick(10**12) == []


def test_unreadable_record_is_kept_on_the_rejected_topic_by_the_loop() -> None:
    r = router(partner("p-a"))
    with pytest.raises(ValueError):
        r.process(Message(b"not json"))
    loop = TransactionalLoop(SETTINGS, "route", "t.events", r)
    [kept] = loop._process(Message(b"not json", partition=1, offset=9))
    assert kept.topic == "t.events.rejected" and kept.value is not None
    assert json.loads(kept.value)["source"]["offset"] == 9


def test_ttl_keeps_an_entry_whose_merge_wait_still_runs_and_moves_on() -> None:
    r = router(merged(wait=10**13), sub_type=2)
    r.process(Message(linkage_event(status=0, event_id="L-3").encode()))
    r.process(Message(raw_event(event_id="T-2").encode()))
    expired = r.tick(10**12)  # past both TTLs, before L-3's merge deadline
    assert [(o.key, o.value) for o in changelog(expired)] == [(b"T-2", None)]
    assert list(r.states[0]) == ["L-3"]
