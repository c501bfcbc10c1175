"""Dispatch and settle (bridge.delivery.dispatch) against in-memory topics, without Kafka.

The real ``Dispatcher`` and ``PartnerSender``; the source and sink are ``MemoryQueue``, which
fails the test (``violations``) when a task is settled before the records that justify it, and
whose ``commit_position`` is the offset a consumer could commit. The partner answers through the
sender's client seam; its gates make "in flight" a state to look at, not a duration.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import replace

from bridge.delivery.delivered import DeliveredIds, task_key
from bridge.delivery.records import encode_outcome, outcome
from bridge.delivery.result import SendResult
from bridge.delivery.source import TaskRef
from bridge.settings import Settings
from tests.fixtures.delivery import Bench, PartnerBook, dispatching, partner_with, task_for, until


def _settings(**overrides: object) -> Settings:
    # No jitter and short delays, so a retry comes back at once; a test that wants parked tasks
    # to stay parked gives a long first delay.
    values: dict[str, object] = {"retry_schedule": [0.02, 0.02], "retry_jitter": 0.0}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _all_settled(bench: Bench) -> bool:
    return not bench.queue.unsettled()


def _settled(bench: Bench, refs: list[TaskRef]) -> bool:
    return set(refs) <= set(bench.queue.settled_refs)


def _clean(bench: Bench) -> None:
    assert bench.queue.violations == []


# --- isolation ----------------------------------------------------------------------------------


async def test_a_slow_partner_spills_and_does_not_hold_a_healthy_one() -> None:
    # Backlog 2: beyond 20 waiting (10x, the hard cap while the slow partner has not answered
    # yet) its new tasks are parked in tier 1; parked ones wait there (a long first delay).
    book = PartnerBook()
    book.add(partner_with("slow", max_in_flight=2), partner_with("fine"))
    async with dispatching(_settings(partner_backlog=2, retry_schedule=[600.0]), book, batch=5) as bench:
        slow = [bench.queue.publish(task_for("slow", f"s{i}", bench.remote.url("gate/slow")))
                for i in range(30)]
        fine = [bench.queue.publish(task_for("fine", f"f{i}", bench.remote.url("ok/fine")))
                for i in range(10)]
        await until(lambda: set(fine) <= set(bench.queue.settled_refs), "the healthy partner's tasks settled")
        assert sorted(bench.remote.event_ids("fine")) == sorted(f"f{i}" for i in range(10))
        assert bench.remote.in_flight["slow"] == 2 and bench.remote.pushes("slow") == 2
        parked = [t for t in bench.queue.tasks(bench.queue.tiers[1]) if t.partner_id == "slow"]
        assert parked, "the slow partner's overflow was not parked in tier 1"
        assert all(t.attempt == 0 for t in parked)  # a spill is not an attempt
        spilled = {bench.queue.tasks(bench.queue.deliveries)[ref.offset].delivery_id
                   for ref in slow if ref in bench.queue.settled_refs}
        assert spilled == {t.delivery_id for t in parked}
        # The commit point stays at the slow partner's first unsettled task.
        assert bench.queue.commit_position() == slow[0].offset
        _clean(bench)


async def test_max_in_flight_is_respected() -> None:
    book = PartnerBook()
    book.add(partner_with("p", max_in_flight=3))
    async with dispatching(_settings(), book) as bench:
        refs = [bench.queue.publish(task_for("p", f"e{i}", bench.remote.url("gate/p"))) for i in range(10)]
        await until(lambda: bench.remote.in_flight["p"] == 3 and bench.dispatcher.partners["p"].waiting == 7,
                    "3 pushes in flight and 7 waiting for a slot")
        assert bench.remote.pushes("p") == 3
        bench.remote.open("p")
        await until(lambda: set(refs) <= set(bench.queue.settled_refs), "every task settled")
        assert bench.remote.peak["p"] == 3
        assert sorted(bench.remote.event_ids("p")) == sorted(f"e{i}" for i in range(10))
        _clean(bench)


async def test_an_ordered_partner_keeps_order_and_retries_in_place() -> None:
    book = PartnerBook()
    book.add(partner_with("ord", ordered=True, max_in_flight=8))
    async with dispatching(_settings(retry_schedule=[0.02, 0.02, 0.02]), book) as bench:
        for i in range(5):
            bench.queue.publish(task_for("ord", f"e{i}", bench.remote.url("fail/2/ord")))
        await until(lambda: _all_settled(bench), "every task settled")
        assert bench.remote.event_ids("ord", ok_only=False) == ["e0", "e0", "e0", "e1", "e2", "e3", "e4"]
        assert bench.remote.event_ids("ord") == ["e0", "e1", "e2", "e3", "e4"]
        assert bench.remote.peak["ord"] == 1
        # Retried in place: nothing went to a retry tier, and each attempt was recorded.
        assert all(not bench.queue.tasks(topic) for topic in bench.queue.tiers.values())
        first = [(o["attempt"], o["result"]) for o in bench.queue.outcomes() if o["event_ids"] == ["e0"]]
        assert first == [(0, "retry"), (1, "retry"), (2, "delivered")]
        _clean(bench)


# --- the retry decision -------------------------------------------------------------------------


async def test_a_retriable_failure_goes_to_the_next_tier_with_attempt_plus_one_then_to_the_dlq() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        bench.queue.publish(task_for("p", "e0", bench.remote.url("status/500/p")))
        await until(lambda: bench.queue.dead_letters() and _all_settled(bench), "the task dead-lettered")
        tier1, tier2 = (bench.queue.tasks(bench.queue.tiers[n]) for n in (1, 2))
        assert [(t.attempt, t.trigger) for t in tier1] == [(1, "retry")]
        assert [(t.attempt, t.trigger) for t in tier2] == [(2, "retry")]
        outcomes = bench.queue.outcomes()
        assert [(o["attempt"], o["result"], o["status_code"]) for o in outcomes] == [
            (0, "retry", 500), (1, "retry", 500), (2, "dead", 500)]
        # The successor waits until the time its outcome announced.
        assert int(tier1[0].not_before * 1000) == round(outcomes[0]["next_retry_at"].timestamp() * 1000)
        [letter] = bench.queue.dead_letters()
        assert letter["attempts"] == 3 and letter["last_status_code"] == 500
        assert letter["reason"].startswith("gave up after 3 attempts")
        assert bench.remote.pushes("p") == 3
        _clean(bench)


async def test_a_task_read_from_the_last_tier_that_fails_is_dead_lettered() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        last = bench.queue.tiers[2]
        bench.queue.publish(task_for("p", "e0", bench.remote.url("status/503/p"), attempt=2, trigger="retry"), last)
        await until(lambda: _all_settled(bench), "the task settled")
        assert [letter["attempts"] for letter in bench.queue.dead_letters()] == [3]
        assert bench.remote.pushes("p") == 1
        _clean(bench)


async def test_410_is_dead_at_once_and_other_4xx_are_retried() -> None:
    # Only 410 Gone (and a destination the URL policy refuses) is permanent; a 400 may be a
    # partner's bad deploy, so it is retried like any non-2xx (README "Retries").
    book = PartnerBook()
    book.add(partner_with("gone"), partner_with("bad"))
    async with dispatching(_settings(retry_schedule=[600.0]), book) as bench:
        refs = [bench.queue.publish(task_for("gone", "g0", bench.remote.url("status/410/gone"))),
                bench.queue.publish(task_for("bad", "b0", bench.remote.url("status/400/bad")))]
        await until(lambda: _settled(bench, refs), "both tasks settled")
        [letter] = bench.queue.dead_letters()
        assert letter["task"]["partner_id"] == "gone" and letter["reason"].startswith("permanent failure")
        assert [(t.partner_id, t.attempt) for t in bench.queue.tasks(bench.queue.tiers[1])] == [("bad", 1)]
        assert bench.remote.pushes("gone") == 1
        _clean(bench)


async def test_an_open_breaker_defers_tasks_without_losing_them() -> None:
    # One at a time, so that the first two failures open the breaker before the others go.
    book = PartnerBook()
    book.add(partner_with("p", max_in_flight=1))
    settings = _settings(breaker_failures=2, breaker_cooldown_s=0.1, retry_schedule=[0.3] * 8)
    async with dispatching(settings, book) as bench:
        for i in range(6):
            bench.queue.publish(task_for("p", f"e{i}", bench.remote.url("toggle/p")))
        await until(lambda: sum(o["error"] == "breaker_open" for o in bench.queue.outcomes()) >= 4,
                    "the other tasks deferred by the open breaker")
        assert bench.remote.pushes("p") == 2  # deferred tasks were not pushed
        bench.remote.heal("p")
        await until(lambda: len(set(bench.remote.event_ids("p"))) == 6 and _all_settled(bench),
                    "every task delivered once the breaker closed")
        assert Counter(bench.remote.event_ids("p")) == Counter({f"e{i}": 1 for i in range(6)})
        assert bench.queue.dead_letters() == []
        # Only attempts that reached the partner have a status: breaker_open ones did not push.
        assert sum(o["status_code"] is not None for o in bench.queue.outcomes()) == bench.remote.pushes("p")
        states = bench.queue.logs[bench.dispatcher.state_topic]
        assert any(b'"open"' in value for value in states) and b'"closed"' in states[-1]
        _clean(bench)


# --- settle -------------------------------------------------------------------------------------


async def test_the_commit_point_never_passes_an_unsettled_task() -> None:
    book = PartnerBook()
    book.add(partner_with("slow"), partner_with("fine"))
    async with dispatching(_settings(), book) as bench:
        held = bench.queue.publish(task_for("slow", "s0", bench.remote.url("gate/slow")))
        fine = [bench.queue.publish(task_for("fine", f"f{i}", bench.remote.url("ok/fine"))) for i in range(5)]
        await until(lambda: set(fine) <= set(bench.queue.settled_refs), "the later tasks settled")
        assert bench.queue.commit_position() == held.offset == 0
        bench.remote.open("slow")
        await until(lambda: _all_settled(bench), "every task settled")
        assert bench.queue.commit_position() == 6
        _clean(bench)


async def test_a_task_is_settled_only_once_its_records_are_acknowledged() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        bench.queue.fail_writes = 2  # the sink refuses the outcome twice (Kafka away), then takes it
        ref = bench.queue.publish(task_for("p", "e0", bench.remote.url("ok/p")))
        await until(lambda: bench.queue.failed_writes == 1, "the first write refused")
        assert bench.remote.pushes("p") == 1
        assert ref not in bench.queue.settled_refs and bench.queue.commit_position() == 0
        await until(lambda: _all_settled(bench), "the task settled")
        assert bench.queue.failed_writes == 2
        assert [o["result"] for o in bench.queue.outcomes()] == ["delivered"]
        assert bench.remote.pushes("p") == 1  # the push is not repeated for a failed write
        _clean(bench)


async def test_a_batch_settles_every_event_on_2xx() -> None:
    book = PartnerBook()
    book.add(partner_with("p", max_batch=5, max_in_flight=1))
    async with dispatching(_settings(), book) as bench:
        bench.queue.publish(task_for("p", "e0", bench.remote.url("gate/p")))
        await until(lambda: bench.remote.in_flight["p"] == 1, "the first push in flight")
        for i in range(1, 6):
            bench.queue.publish(task_for("p", f"e{i}", bench.remote.url("gate/p")))
        await until(lambda: len(bench.dispatcher.partners["p"].pending) == 5, "five tasks waiting")
        bench.remote.open("p")
        await until(lambda: _all_settled(bench), "every task settled")
        assert bench.remote.pushed_events("p") == [["e0"], ["e1", "e2", "e3", "e4", "e5"]]
        delivered = [o["event_ids"] for o in bench.queue.outcomes() if o["result"] == "delivered"]
        assert delivered == [["e0"], ["e1", "e2", "e3", "e4", "e5"]]
        _clean(bench)


async def test_a_batch_push_is_the_platform_format_byte_for_byte() -> None:
    # What a partner got for these events before batching was reworked: the first task's body
    # with every event of the batch in order, written compactly as UTF-8 (json, not orjson,
    # here: an independent writer of the same bytes).
    book = PartnerBook()
    book.add(partner_with("p", max_batch=5, max_in_flight=1))
    async with dispatching(_settings(), book) as bench:
        first = task_for("p", "e0", bench.remote.url("gate/p"))
        bench.queue.publish(first)
        await until(lambda: bench.remote.in_flight["p"] == 1, "the first push in flight")
        tasks = []
        for i in range(1, 4):
            task = task_for("p", f"e{i}", bench.remote.url("gate/p"))
            event = {"eventId": f"e{i}", "srcName": f"Caméra {i} — 北门", "data": {"n": i, "x": [1.5, None]}}
            tasks.append(replace(task, body={**task.body, "params": {**task.body["params"], "events": [event]}}))
            bench.queue.publish(tasks[-1])
        await until(lambda: len(bench.dispatcher.partners["p"].pending) == 3, "three tasks waiting")
        # Waiting tasks of a batching partner hold no coroutine each: one drain, one push.
        assert len(bench.dispatcher._tasks) <= 2
        bench.remote.open("p")
        await until(lambda: _all_settled(bench), "every task settled")
        bodies = [request.content for request, _ in bench.remote.received]
        params = {**tasks[0].body["params"], "events": [t.body["params"]["events"][0] for t in tasks]}
        expected = json.dumps({**tasks[0].body, "params": params}, ensure_ascii=False,
                              separators=(",", ":")).encode()
        assert bodies[1] == expected
        assert bodies[0] == json.dumps(first.body, ensure_ascii=False, separators=(",", ":")).encode()
        _clean(bench)


async def test_a_failed_batch_retries_all_its_events() -> None:
    book = PartnerBook()
    book.add(partner_with("p", max_batch=5, max_in_flight=1))
    async with dispatching(_settings(retry_schedule=[600.0]), book) as bench:
        originals = [task_for("p", f"e{i}", bench.remote.url("gate/500/p")) for i in range(6)]
        refs = [bench.queue.publish(originals[0])]
        await until(lambda: bench.remote.in_flight["p"] == 1, "the first push in flight")
        refs += [bench.queue.publish(task) for task in originals[1:]]
        await until(lambda: len(bench.dispatcher.partners["p"].pending) == 5, "five tasks waiting")
        bench.remote.open("p")
        await until(lambda: _settled(bench, refs), "every task settled")
        retried = bench.queue.tasks(bench.queue.tiers[1])
        assert [(t.event_ids, t.attempt) for t in retried] == [
            (("e0",), 1), (("e1", "e2", "e3", "e4", "e5"), 1)]
        # The batch retries as one task of its own (the same id if it is pushed again).
        assert retried[1].delivery_id not in {t.delivery_id for t in originals}
        assert retried[1].extra["batchOf"] == [t.delivery_id for t in originals[1:]]
        _clean(bench)


async def test_a_delivered_task_read_again_is_not_pushed_twice() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        task = task_for("p", "e0", bench.remote.url("ok/p"))
        bench.queue.publish(task)
        await until(lambda: _all_settled(bench), "the task settled")
        bench.queue.publish(task)  # redone after a rebalance, or a parked copy
        await until(lambda: _all_settled(bench), "the copy settled")
        assert bench.remote.pushes("p") == 1
        assert len(bench.queue.outcomes()) == 1
        # A replay is asked for: it is pushed again, on purpose.
        bench.queue.publish(replace(task, trigger="replay"))
        await until(lambda: _all_settled(bench), "the replay settled")
        assert bench.remote.pushes("p") == 2
        _clean(bench)


async def test_a_copy_read_while_its_task_is_in_flight_is_not_pushed() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        task = task_for("p", "e0", bench.remote.url("gate/p"))
        first = bench.queue.publish(task)
        await until(lambda: bench.remote.in_flight["p"] == 1, "the push in flight")
        copy = bench.queue.publish(task)
        await until(lambda: copy in bench.queue.settled_refs, "the copy settled")
        assert first not in bench.queue.settled_refs and bench.queue.commit_position() == 0
        bench.remote.open("p")
        await until(lambda: _all_settled(bench), "the task settled")
        assert bench.remote.pushes("p") == 1
        _clean(bench)


async def test_a_task_delivered_by_the_previous_owner_is_not_pushed() -> None:
    # What the Kafka consumer reads back from bridge.outcomes on assignment (delivered.read_recent).
    book = PartnerBook()
    book.add(partner_with("p"))
    delivered = DeliveredIds(600.0)
    async with dispatching(_settings(), book, delivered=delivered) as bench:
        task = task_for("p", "e0", bench.remote.url("ok/p"))
        # The previous owner's outcome, as it is in bridge.outcomes.
        value, headers = encode_outcome(outcome(task, SendResult.delivered(200, 0.01), "delivered", time.time(), None))
        await bench.queue.send_many([(bench.queue.outcomes_topic, b"p", value, headers)])
        delivered.add(task_key(task), time.time())
        bench.queue.publish(task)
        await until(lambda: _all_settled(bench), "the task settled")
        assert bench.remote.pushes("p") == 0
        _clean(bench)


# --- not_before, revocation, odd records ----------------------------------------------------------


async def test_a_retry_waits_for_its_not_before_and_holds_the_tasks_behind_it() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        tier = bench.queue.tiers[1]
        due = time.time() + 0.3
        bench.queue.publish(task_for("p", "later", bench.remote.url("ok/p"), attempt=1, trigger="retry",
                                     not_before=due), tier)
        bench.queue.publish(task_for("p", "behind", bench.remote.url("ok/p"), attempt=1, trigger="retry"), tier)
        await until(lambda: _all_settled(bench), "both tasks settled")
        assert bench.remote.event_ids("p") == ["later", "behind"]
        assert all(at >= due for _, at in bench.remote.received)
        _clean(bench)


async def test_a_revoked_partition_drops_its_held_tasks() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        tier = bench.queue.tiers[1]
        bench.queue.publish(task_for("p", "e0", bench.remote.url("ok/p"), attempt=1, trigger="retry",
                                     not_before=time.time() + 3600), tier)
        await until(lambda: bool(bench.dispatcher.held), "the task held")
        bench.queue.revoke(tier)
        await until(lambda: not bench.dispatcher.held, "the held task dropped")
        assert bench.remote.pushes("p") == 0 and bench.queue.settled_refs == []
        _clean(bench)


async def test_undecodable_records_and_inactive_partners_are_dead_lettered() -> None:
    book = PartnerBook()
    book.add(partner_with("off", state="disabled"))
    async with dispatching(_settings(), book) as bench:
        bench.queue.publish_raw(b"\x00 not a task")
        bench.queue.publish(task_for("gone", "e0", bench.remote.url("ok/gone")))
        bench.queue.publish(task_for("off", "e1", bench.remote.url("ok/off")))
        await until(lambda: _all_settled(bench), "every record settled")
        letters = bench.queue.dead_letters()
        assert "undecodable" in letters[0]
        assert sorted(letter["reason"] for letter in letters[1:]) == ["partner deleted", "partner disabled"]
        assert bench.remote.received == []
        _clean(bench)


# --- drain --------------------------------------------------------------------------------------


async def test_stop_lets_pushes_in_flight_settle() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        refs = [bench.queue.publish(task_for("p", f"e{i}", bench.remote.url("gate/p"))) for i in range(3)]
        await until(lambda: bench.remote.in_flight["p"] == 3, "three pushes in flight")
        bench.stop.set()
        await until(lambda: bench.dispatcher.draining, "the drain begun")
        assert not bench.running.done()  # waiting for the pushes
        bench.remote.open("p")
        await bench.running
        assert set(refs) <= set(bench.queue.settled_refs)
        assert len(bench.queue.outcomes()) == 3 and bench.queue.commit_position() == 3
        _clean(bench)


async def test_stop_waits_for_the_pushes_started_during_the_drain() -> None:
    # One slot: one push in flight, two tasks waiting for the slot when the stop comes. The
    # partner's drain pushes them one after the other during the drain (the last one held at a
    # gate of its own); the dispatcher returns only when all three settled (a push answered but
    # left unsettled would be pushed again by the next owner, and a waiting task left unsettled
    # holds the commit point below the settled ones after it).
    book = PartnerBook()
    book.add(partner_with("p", max_in_flight=1))
    async with dispatching(_settings(), book) as bench:
        refs = [bench.queue.publish(task_for("p", "e0", bench.remote.url("gate/p"))),
                bench.queue.publish(task_for("p", "e1", bench.remote.url("ok/p"))),
                bench.queue.publish(task_for("p", "e2", bench.remote.url("gate/last")))]
        await until(lambda: bench.remote.in_flight["p"] == 1 and bench.dispatcher.partners["p"].waiting == 2,
                    "one push in flight, two waiting")
        bench.stop.set()
        await until(lambda: bench.dispatcher.draining, "the drain begun")
        bench.remote.open("p")
        await until(lambda: bench.remote.in_flight["last"] == 1, "the last push started during the drain")
        assert not bench.running.done()  # waiting for it
        bench.remote.open("last")
        await bench.running
        assert set(refs) <= set(bench.queue.settled_refs) and bench.queue.commit_position() == 3
        assert len(bench.queue.outcomes()) == 3
        _clean(bench)


async def test_stop_leaves_unfinished_pushes_unsettled_never_settled_unwritten() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book, drain_timeout_s=0.05) as bench:
        for i in range(3):
            bench.queue.publish(task_for("p", f"e{i}", bench.remote.url("gate/p")))
        await until(lambda: bench.remote.in_flight["p"] == 3, "three pushes in flight")
        bench.stop.set()
        await bench.running  # the drain gave up on them
        assert bench.queue.settled_refs == [] and bench.queue.outcomes() == []
        assert bench.queue.commit_position() == 0
        _clean(bench)


async def test_a_write_refused_while_stopping_leaves_the_task_unsettled() -> None:
    book = PartnerBook()
    book.add(partner_with("p"))
    async with dispatching(_settings(), book) as bench:
        bench.queue.publish(task_for("p", "e0", bench.remote.url("gate/p")))
        await until(lambda: bench.remote.in_flight["p"] == 1, "the push in flight")
        bench.queue.fail_writes = 1_000
        bench.stop.set()
        await until(lambda: bench.dispatcher.draining, "the drain begun")
        bench.remote.open("p")
        await bench.running
        # Delivered, but its outcome is not written: it stays unsettled (redone by the next owner
        # with the same delivery id, and the partner drops the duplicate).
        assert bench.remote.pushes("p") == 1 and bench.queue.failed_writes >= 1
        assert bench.queue.settled_refs == [] and bench.queue.commit_position() == 0
        _clean(bench)
