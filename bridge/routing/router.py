"""The routing stage: ``bridge.events`` → one DeliveryTask per matching partner → ``bridge.deliveries``.

Each event is matched (``matching.route``, pure) and correlated with the earlier reports of its
eventId (``correlation.correlate``, pure). The correlation state lives in memory per partition,
ordered by last update, and every change is written to the compacted ``bridge.correlation``
changelog in the same Kafka transaction as the tasks and the consumed offset
(``txloop.TransactionalLoop``): a crash never loses a routed event, never double-applies one,
and the next owner of a partition restores exactly the state that goes with its committed offset.

The subscription side is a global view (every worker holds the whole, single-partition registry),
so it needs no co-partitioning with ``bridge.events``; start-up checks that the registry topics
have exactly one partition, which is what makes every worker's view complete. The correlation
changelog is co-partitioned with ``bridge.events`` (one eventId has one eventType, hence one
partition); ``topics create`` refuses a partition count that differs from the table.
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections import OrderedDict
from typing import Any

from prometheus_client import Counter, Gauge

from bridge import schemas
from bridge.events import TASK_HEADROOM, DeliveryTask, EventRecord, encode_tasks
from bridge.registry.view import RegistryView
from bridge.routing import correlation
from bridge.routing.matching import route
from bridge.runtime.txloop import Out
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.routing")



ROUTED = Counter("bridge_routed_events_total", "Events routed, by outcome", ["outcome"])



TASKS = Counter("bridge_routing_tasks_total", "Delivery tasks produced by routing")



ENTRIES = Gauge("bridge_correlation_entries", "eventIds with correlation state in this worker")



class Router:
    """The routing handler of the transactional loop; owns the correlation state of its partitions."""

    def __init__(self, settings: Settings, view: RegistryView) -> None:
        table = topic_table(settings)
        self.settings = settings
        self.view = view
        self.changelog: str | None = table["correlation"].name
        self.deliveries = table["deliveries"].name
        self.lifecycle = table["lifecycle"].name
        self.ttl_s = settings.correlation_ttl_hours * 3600
        # Each partition keeps its share of the bound, so a worker never holds more than it.
        self.cap = max(1, settings.correlation_max_entries // settings.partitions)
        self.states: dict[int, OrderedDict[str, dict[str, Any]]] = {}
        # (deadline, partition, eventId) of held merged-linkage events; stale entries are skipped.
        self.deadlines: list[tuple[float, int, str]] = []
        self.max_state_bytes = settings.max_record_bytes - TASK_HEADROOM
        self.lifecycle_header = [(schemas.SCHEMA_HEADER, schemas.schema_fingerprint("lifecycle").encode())]

    # --- partitions ---------------------------------------------------------------------------

    def restore(self, partition: int, entries: dict[bytes, bytes]) -> None:
        states = [json.loads(value) for value in entries.values()]
        states.sort(key=lambda s: s["last"])
        self.states[partition] = OrderedDict((s["eventId"], s) for s in states)
        for state in states:
            self._watch(partition, state)
        self._gauge()

    def revoke(self, partition: int) -> None:
        self.states.pop(partition, None)
        self._gauge()

    # --- records ------------------------------------------------------------------------------

    def process(self, message: Any) -> list[Out]:
        partition = message.partition()
        # Ingest validated it; a record that does not decode raises, and the loop keeps it
        # (with the error) on events.rejected.
        record = EventRecord.decode(message.value())
        view = self.view
        now = time.time()
        statuses = view.setting("push_statuses", self.settings.push_statuses)
        tasks = route(record, view.by_event_type(record.event_type), view.partners, statuses, now)
        states = self.states.setdefault(partition, OrderedDict())
        step = correlation.correlate(states.get(record.event_id), record, tasks, view.partners,
                                     partition, now)
        if step.duplicate:
            ROUTED.labels("duplicate").inc()
            return []
        ROUTED.labels("routed").inc()
        put = self._put(partition, step.state)
        if put.size() > self.max_state_bytes:
            step = self._shrink(step)
            put = self._put(partition, step.state)
        out = self._tasks(step.send)
        out.append(put)
        out.append(Out(self.lifecycle, record.event_id.encode(),
                       schemas.encode("lifecycle", correlation.lifecycle(step.state)), self.lifecycle_header))
        out.extend(self._bound(partition))
        return out

    def tick(self, now: float) -> list[Out]:
        out: list[Out] = []
        while self.deadlines and self.deadlines[0][0] <= now:  # held events whose wait ran out
            _, partition, event_id = heapq.heappop(self.deadlines)
            state = self.states.get(partition, {}).get(event_id)
            if state is not None:
                out.extend(self._expire(partition, state, now, self.ttl_s))
        for partition, states in list(self.states.items()):  # TTL: oldest updates first
            for _ in range(len(states)):  # visits only the expired front, without copying
                state = next(iter(states.values()))
                if now - state["last"] <= self.ttl_s:
                    break
                out.extend(self._expire(partition, state, now, self.ttl_s))
                if states.get(state["eventId"]) is state:  # kept: a merge wait still runs
                    states.move_to_end(state["eventId"])
        return out

    # --- state --------------------------------------------------------------------------------

    def _shrink(self, step: correlation.Step) -> correlation.Step:
        """A state too large for its changelog record gives up what makes it large.

        Held merged-linkage pushes go now, unmerged (as after their wait), and the original
        event kept for attached pictures is forgotten (later pictures go as they come). What
        is left is a few ids and hashes: it fits, and the changelog stays the truth.
        """
        state = step.state
        released = [DeliveryTask.decode(entry["task"].encode()) for entry in state["held"].values()]
        log.warning("correlation state of eventId %.100r is too large for its changelog record; "
                    "released %d held pushes unmerged", state["eventId"], len(released))
        small = {**state, "held": {}, "original": None, "linkage": state["linkage"][-1:]}
        return correlation.Step(small, [*step.send, *released])

    def _tasks(self, tasks: list[DeliveryTask]) -> list[Out]:
        TASKS.inc(len(tasks))
        return [Out(self.deliveries, t.partner_id.encode(), data)
                for t, data in zip(tasks, encode_tasks(tasks))]

    def _put(self, partition: int, state: dict[str, Any]) -> Out:
        states = self.states.setdefault(partition, OrderedDict())
        states[state["eventId"]] = state
        states.move_to_end(state["eventId"])
        self._watch(partition, state)
        self._gauge()
        return Out(self.changelog or "", state["eventId"].encode(),
                   json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode(),
                   partition=partition)

    def _drop(self, partition: int, event_id: str) -> Out:
        self.states.get(partition, OrderedDict()).pop(event_id, None)
        self._gauge()
        return Out(self.changelog or "", event_id.encode(), None, partition=partition)

    def _expire(self, partition: int, state: dict[str, Any], now: float, ttl_s: float) -> list[Out]:
        kept, release = correlation.expire(state, now, ttl_s)
        out = self._tasks(release)
        if kept is None:
            out.append(self._drop(partition, state["eventId"]))
        elif release:
            out.append(self._put(partition, kept))
        return out

    def _bound(self, partition: int) -> list[Out]:
        """Beyond the bound, release the least recently updated eventIds of this partition."""
        states = self.states[partition]
        out: list[Out] = []
        while len(states) > self.cap:
            _, oldest = next(iter(states.items()))
            out.extend(self._expire(partition, oldest, float("inf"), 0))
        return out

    def _watch(self, partition: int, state: dict[str, Any]) -> None:
        for entry in state["held"].values():
            heapq.heappush(self.deadlines, (entry["deadline"], partition, state["eventId"]))

    def _gauge(self) -> None:
        ENTRIES.set(sum(len(s) for s in self.states.values()))
