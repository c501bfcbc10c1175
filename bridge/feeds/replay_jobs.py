"""Replay jobs shared by every api replica: their state lives on the compacted ``bridge.replays``.

Every api's registry view reads the topic, so any api lists a job, shows its progress and takes
its cancellation; the api that started it (its owner) runs it and records, about twice a
second, its progress and its position (per partition, the next offset of ``bridge.events`` to
handle). Records of one job share the key ``job:<id>``; a cancellation is its own key
``cancel:<id>``, so the owner's progress records can never overwrite it.

What survives an api restart: the job, not the process. An api whose jobs stop reporting (it
was killed, or it released them when it was stopped) leaves them "running" but orphaned; after
``BRIDGE_REPLAY_TAKEOVER_S`` (at once for a released job) another api, or the restarted one,
claims the job (the next ``epoch``; the log decides between two claimants, see
:func:`bridge.registry.view.job_record_applies`) and continues from the recorded position with the
recorded counts. An operator who started a replay of a day of events expects it to finish
through a rolling update of the api, not to find it "interrupted" after every deploy. The cost
is at-least-once: tasks enqueued after the last recorded position are enqueued again, with the
same delivery ids, which partners already use to drop duplicates of a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import NotFound
from bridge.feeds import replay as rp
from bridge.kafka.producer import AsyncProducer
from bridge.registry.view import RegistryView
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.replay")

#: How often the owner records progress (which is also its sign of life).
HEARTBEAT_S = 0.5
#: How often an api looks for orphaned jobs.
WATCH_S = 1.0
#: How long a cancellation waits for the job to stop before answering.
CANCEL_WAIT_S = 10.0


@dataclass
class _Owned:
    """A job this api runs."""

    epoch: int
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    positions: dict[int, int] = field(default_factory=dict)


def _request_dict(request: rp.ReplayRequest) -> dict[str, Any]:
    return {
        "fromTime": request.from_time, "toTime": request.to_time, "rate": request.rate,
        "fromOffsets": ({str(p): o for p, o in request.from_offsets.items()}
                        if request.from_offsets is not None else None),
        "eventTypes": sorted(request.event_types) if request.event_types is not None else None,
    }


def _request_of(job: dict[str, Any]) -> rp.ReplayRequest:
    raw = job["request"]
    return rp.ReplayRequest(
        job["partnerId"], raw["fromTime"],
        {int(p): o for p, o in raw["fromOffsets"].items()} if raw["fromOffsets"] is not None else None,
        raw["toTime"], frozenset(raw["eventTypes"]) if raw["eventTypes"] is not None else None,
        job["dryRun"], raw["rate"])


def _progress_of(job: dict[str, Any]) -> rp.ReplayProgress:
    return rp.ReplayProgress(
        job["id"], job["partnerId"], job["dryRun"], job["total"], job["scanned"], job["enqueued"],
        Counter({int(t): n for t, n in job["byEventType"].items()}), job["state"], job["error"],
        job["startedAt"], job["finishedAt"])


class ReplayJobs:
    """Start, list, cancel and run replay jobs; take over orphaned ones (one per api process)."""

    def __init__(self, settings: Settings, view: RegistryView, producer: AsyncProducer) -> None:
        self._settings = settings
        self._view = view
        self._producer = producer
        self._topic = topic_table(settings)["replays"].name
        #: This process, as the owner named in job records.
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._owned: dict[str, _Owned] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._claiming: set[str] = set()  # the watcher and a cancellation may look at once

    # lifecycle (inside the api's event loop)

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    async def close(self) -> None:
        """Stop the watcher, then release every job this api runs for another api to continue."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for owned in self._owned.values():
            owned.stopping = True
        tasks = [o.task for o in self._owned.values() if o.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=5)
            for task in late:
                task.cancel()  # _drive still records the hand-over
            if late:
                await asyncio.wait(late, timeout=5)

    # the admin API's operations

    async def start_job(self, request: rp.ReplayRequest, the_plan: rp.ReplayPlan) -> dict[str, Any]:
        progress = rp.ReplayProgress(uuid.uuid4().hex[:12], request.partner_id, request.dry_run,
                                     the_plan.total)
        job = {**progress.as_dict(), "request": _request_dict(request),
               "ranges": {str(p): [s, e] for p, (s, e) in the_plan.ranges.items()}, "positions": {},
               "owner": self.instance, "epoch": 0, "heartbeatAt": time.time(), "released": False}
        await self._write(f"job:{progress.id}", job)
        self._run(job)
        return self.get(progress.id)

    def get(self, job_id: str) -> dict[str, Any]:
        job = self._view.replay(job_id)
        if job is None:
            raise NotFound(f"no replay {job_id!r}")
        return job

    def list(self) -> list[dict[str, Any]]:
        return self._view.all_replays()

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job's owner, wherever it runs, to stop; answer once it has (or after a wait)."""
        job = self.get(job_id)
        if job["state"] == "running":
            await self._write(f"cancel:{job_id}", {"at": time.time(), "by": self.instance})
            # An orphaned job has nobody to stop it: this api claims it and records it cancelled.
            await self._maybe_take_over(self.get(job_id))
            deadline = time.monotonic() + CANCEL_WAIT_S
            while job["state"] == "running" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                job = self.get(job_id)
        return job

    # running

    async def _write(self, key: str, value: dict[str, Any]) -> None:
        """Write one record and wait until this api's view shows it (read-your-writes)."""
        _, offset = await self._producer.send(self._topic, json.dumps(value).encode(), key=key.encode())
        await asyncio.to_thread(self._view.wait_applied, self._topic, offset)

    def _record(self, job: dict[str, Any], progress: rp.ReplayProgress, owned: _Owned,
                **changes: Any) -> dict[str, Any]:
        return {**job, **progress.as_dict(), "positions": {str(p): o for p, o in owned.positions.items()},
                "owner": self.instance, "epoch": owned.epoch, "heartbeatAt": time.time(),
                "released": False, **changes}

    def _run(self, job: dict[str, Any]) -> None:
        owned = _Owned(job["epoch"], positions={int(p): o for p, o in job["positions"].items()})
        self._owned[job["id"]] = owned
        owned.task = asyncio.create_task(self._drive(job, owned))
        owned.task.add_done_callback(lambda _: self._owned.pop(job["id"], None))

    def _still_owner(self, job_id: str, owned: _Owned) -> bool:
        current = self._view.replay(job_id)
        return current is not None and current["owner"] == self.instance and current["epoch"] == owned.epoch

    async def _drive(self, job: dict[str, Any], owned: _Owned) -> None:
        job_id = job["id"]
        request, progress = _request_of(job), _progress_of(job)
        remaining = rp.ReplayPlan({
            int(p): (max(start, owned.positions.get(int(p), start)), end)
            for p, (start, end) in job["ranges"].items() if owned.positions.get(int(p), start) < end})

        def cancelled() -> bool:
            return (owned.stopping or self._view.replay_cancel_requested(job_id)
                    or not self._still_owner(job_id, owned))

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                if not self._still_owner(job_id, owned):
                    continue
                try:
                    await self._write(f"job:{job_id}", self._record(job, progress, owned))
                except Exception as exc:  # Kafka away for a moment: the next beat tries again
                    log.warning("replay %s: cannot record progress: %s", job_id, exc)

        beat = asyncio.create_task(heartbeat())
        try:
            await rp.run(self._settings, self._view, self._producer, request, progress, remaining,
                         cancelled, owned.positions.__setitem__)
        except asyncio.CancelledError:
            if not owned.stopping:
                raise
            # The api is stopping and the run did not end in time (a slow rate's pause): the
            # recorded position is exact all the same, so hand the job over below.
            progress.state = "cancelled"
        except Exception as exc:  # the job's state says why; the api goes on
            if progress.state == "running":
                progress.state, progress.error = "failed", str(exc)
            log.warning("replay %s failed: %s", job_id, exc)
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
        if not self._still_owner(job_id, owned):
            return  # taken over by another api: its records now speak for the job
        changes: dict[str, Any] = {}
        if owned.stopping and not self._view.replay_cancel_requested(job_id) and progress.state == "cancelled":
            # Stopped with its api, not by an operator: hand it over, still running.
            changes = {"state": "running", "finishedAt": None, "released": True}
        elif progress.finished_at is None:
            progress.finished_at = time.time()
        try:
            await self._write(f"job:{job_id}", self._record(job, progress, owned, **changes))
        except Exception as exc:
            # Left "running" with its last position: another api continues it once it is silent.
            log.warning("replay %s: cannot record its end (%s): %s", job_id, progress.state, exc)

    async def _watch(self) -> None:
        """Claim running jobs whose owner stopped reporting (or released them), and run them."""
        while True:
            await asyncio.sleep(WATCH_S)
            if not self._view.ready:
                continue
            for job in self._view.all_replays():
                try:
                    await self._maybe_forget(job)
                    await self._maybe_take_over(job)
                except Exception as exc:  # Kafka down: try again at the next round
                    log.warning("replay %s: cannot take it over yet: %s", job["id"], exc)

    async def _maybe_forget(self, job: dict[str, Any]) -> None:
        """Delete a finished job once the events it replayed have left the log (bounds the list)."""
        keep_s = self._settings.events_retention_hours * 3600
        if job["state"] == "running" or time.time() - (job["finishedAt"] or time.time()) <= keep_s:
            return
        # Every api may do this at once: tombstones are idempotent.
        await self._producer.send_many([(self._topic, f"{kind}:{job['id']}".encode(), None, None)  # type: ignore[list-item]
                                        for kind in ("job", "cancel")])

    async def _maybe_take_over(self, job: dict[str, Any]) -> None:
        if job["state"] != "running" or job["id"] in self._owned or job["id"] in self._claiming:
            return
        self._claiming.add(job["id"])
        try:
            await self._take_over_if_orphaned(job)
        finally:
            self._claiming.discard(job["id"])

    async def _take_over_if_orphaned(self, job: dict[str, Any]) -> None:
        silent_s = time.time() - job["heartbeatAt"]
        if not job["released"] and silent_s <= self._settings.replay_takeover_s:
            return
        claim = {**job, "owner": self.instance, "epoch": job["epoch"] + 1,
                 "heartbeatAt": time.time(), "released": False}
        claim.pop("cancelRequested", None)
        await self._write(f"job:{job['id']}", claim)
        current = self._view.replay(job["id"])
        if current is None or current["owner"] != self.instance or current["epoch"] != claim["epoch"]:
            return  # another api claimed it first
        current.pop("cancelRequested")
        if self._view.replay_cancel_requested(job["id"]):
            await self._write(f"job:{job['id']}", {**current, "state": "cancelled",
                                                    "finishedAt": time.time()})
            return
        log.info("replay %s: taken over from %s at %s (silent %.1f s)", job["id"], job["owner"],
                 current["positions"], silent_s)
        self._run(current)
