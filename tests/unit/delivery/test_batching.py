"""Per-partner batching (bridge.delivery.batching): which waiting tasks share one push, the merged push."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bridge.events import DeliveryTask
from tests.fixtures.tasks import make_task


# --- batching (maxBatch) -------------------------------------------------------------------------

def _one(event_id: str, **overrides: Any) -> DeliveryTask:
    task = make_task(event_ids=(event_id,), delivery_id=f"id-{event_id}", **overrides)
    body = {**task.body, "params": {**task.body["params"], "events": [{"eventId": event_id}]}}
    return replace(task, body=body)


def _pending(*tasks: DeliveryTask) -> Any:
    from collections import deque

    from bridge.delivery.batching import Waiting
    from bridge.delivery.source import TaskRef

    return deque(Waiting(TaskRef("t", 0, i), t, t.delivery_id) for i, t in enumerate(tasks))


class TestBatching:
    def test_takes_compatible_tasks_up_to_max_events(self) -> None:
        from bridge.delivery.batching import take_batch

        pending = _pending(*(_one(f"e{i}") for i in range(5)))
        batch = take_batch(pending, 3)
        assert [t.event_ids for _, t, _ in batch] == [("e0",), ("e1",), ("e2",)]
        assert len(pending) == 2

    def test_one_waiting_task_goes_alone_at_once(self) -> None:
        from bridge.delivery.batching import take_batch

        pending = _pending(_one("e0"))
        assert [t.event_ids for _, t, _ in take_batch(pending, 50)] == [("e0",)]
        assert take_batch(pending, 50) == []

    def test_stops_at_a_task_for_another_destination_or_attempt(self) -> None:
        from bridge.delivery.batching import take_batch

        pending = _pending(_one("e0"), _one("e1", event_dest="http://127.0.0.1:1/other"), _one("e2"))
        assert len(take_batch(pending, 50)) == 1
        pending = _pending(_one("e0"), _one("e1", attempt=2))
        assert len(take_batch(pending, 50)) == 1

    def test_other_send_times_share_a_push_other_abilities_do_not(self) -> None:
        from bridge.delivery.batching import take_batch

        def with_params(event_id: str, **params: Any) -> DeliveryTask:
            task = _one(event_id)
            return replace(task, body={**task.body, "params": {**task.body["params"], **params}})

        pending = _pending(_one("e0"), with_params("e1", sendTime="2024-05-01T12:00:09.000+08:00"),
                           with_params("e2", ability="event_acs"))
        assert [t.event_ids for _, t, _ in take_batch(pending, 50)] == [("e0",), ("e1",)]

    def test_envelope_values_that_compare_equal_but_read_differently_do_not_share_a_push(self) -> None:
        from bridge.delivery.batching import take_batch

        def with_params(event_id: str, **params: Any) -> DeliveryTask:
            task = _one(event_id)
            return replace(task, body={**task.body, "params": {**task.body["params"], **params}})

        # 1 == 1.0 == True in Python; a partner reads 1, 1.0 and true as three envelopes.
        pending = _pending(with_params("e0", flag=1), with_params("e1", flag=1), with_params("e2", flag=True),
                           with_params("e3", flag=1.0), with_params("e4", flag={"a": "b"}),
                           with_params("e5", flag={"a": "b"}))
        assert [len(take_batch(pending, 50)) for _ in range(4)] == [2, 1, 1, 2]

    def test_counts_events_not_tasks(self) -> None:
        from bridge.delivery.batching import merge_tasks, take_batch

        merged = merge_tasks([_one("a"), _one("b")])
        pending = _pending(_one("e0"), merged, _one("e1"))
        batch = take_batch(pending, 3)
        assert sum(len(t.event_ids) for _, t, _ in batch) == 3

    def test_merge_is_one_push_with_every_event(self) -> None:
        from bridge.delivery.batching import merge_tasks

        tasks = [_one("e0"), _one("e1"), _one("e2")]
        merged = merge_tasks(tasks)
        assert merged.event_ids == ("e0", "e1", "e2")
        assert [e["eventId"] for e in merged.body["params"]["events"]] == ["e0", "e1", "e2"]
        assert merged.body["params"]["ability"] == tasks[0].body["params"]["ability"]
        assert merged.delivery_id not in {t.delivery_id for t in tasks} and len(merged.delivery_id) == 32
        assert merged.delivery_id == merge_tasks(tasks).delivery_id  # the same batch keeps its id
        assert [e["eventId"] for e in tasks[0].body["params"]["events"]] == ["e0"]  # members untouched
        assert DeliveryTask.decode(merged.encode()) == merged

    @pytest.mark.parametrize(("value", "ok"), [(1, True), (50, True), (0, False), (51, False), (True, False)])
    def test_max_batch_setting_bounds(self, value: Any, ok: bool) -> None:
        from bridge.errors import InvalidInput
        from bridge.registry.partners import delivery_prefs
        from bridge.registry.models import DeliveryPrefs

        if ok:
            assert delivery_prefs(DeliveryPrefs(), {"maxBatch": value}).max_batch == value
        else:
            with pytest.raises(InvalidInput):
                delivery_prefs(DeliveryPrefs(), {"maxBatch": value})
        assert DeliveryPrefs().max_batch == 1
