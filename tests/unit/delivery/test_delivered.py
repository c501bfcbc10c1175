"""Recently delivered ids (bridge.delivery.delivered): what a worker taking over a partition skips."""

from __future__ import annotations

import time

from bridge.delivery.delivered import DeliveredIds


def test_an_id_is_known_for_the_window_then_forgotten() -> None:
    now = time.time()
    ids = DeliveredIds(window_s=60)
    ids.add("fresh", now)
    ids.add("old", now - 120)  # read back from an outcome older than the window
    assert "fresh" in ids
    assert "old" not in ids and "never" not in ids
    assert len(ids) == 1  # the old one was trimmed at once


def test_the_bound_forgets_the_oldest_first() -> None:
    now = time.time()
    ids = DeliveredIds(window_s=600, limit=3)
    for i in range(5):
        ids.add(f"d-{i}", now - 10 + i)
    assert [f"d-{i}" in ids for i in range(5)] == [False, False, True, True, True]


def test_a_later_delivery_of_the_same_id_keeps_it_longer() -> None:
    now = time.time()
    ids = DeliveredIds(window_s=60)
    ids.add("d", now - 50)
    ids.add("d", now - 100)  # an older outcome read later does not shorten it
    assert "d" in ids


def test_a_task_and_its_delivered_outcome_have_the_same_key() -> None:
    from dataclasses import replace

    from bridge.delivery.delivered import _epoch_ms, instance_key, task_key
    from bridge.delivery.records import decode_outcome, encode_outcome, outcome
    from bridge.delivery.result import SendResult
    from bridge.routing.matching import route
    from tests.fixtures.builders import partner, raw_event, sub

    [task] = route(raw_event(event_id="K-1"), [sub("p-a", 131588)], {"p-a": partner("p-a")}, [0, 1, 2],
                   1_700_000_000.0)
    task = replace(task, ingest_ts=1_700_000_123.4567)
    data, _ = encode_outcome(outcome(task, SendResult.delivered(200, 0.01), "delivered", time.time(), None))
    record = decode_outcome(data)
    assert instance_key(record["delivery_id"], _epoch_ms(record["ingested_at"])) == task_key(task)
    # A platform re-send of the same report is a new ingest: the same delivery id, another task.
    assert task_key(replace(task, ingest_ts=task.ingest_ts + 60)) != task_key(task)


def test_an_outcome_read_back_ages_from_its_own_time_not_from_when_it_was_read() -> None:
    ids = DeliveredIds(window_s=60)
    ids.add("late", time.time() - 59.95)  # an outcome near the end of its window, read just now
    assert "late" in ids
    time.sleep(0.1)  # past its delivery time + window (a TTL cache aged by insertion keeps it 60 s)
    assert "late" not in ids
    assert len(ids) == 0
