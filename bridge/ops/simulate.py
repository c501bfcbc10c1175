"""Realistic platform traffic built from the example pushes in ``resources/payloads``.

Each family follows the platform's own patterns (seed FAQ 2, 3, 5), with fresh ids and times:

- ``acs``: access events in bursts (several events in one push, as a busy door controller sends);
- ``parking``: an entry line-press (status 0), then its asynchronous picture (status 5, same eventId);
- ``video``: a start (status 1), then its stop (status 2, same eventId) a few seconds later;
- ``linkage``: a rule firing (status 0), then its linkage-result update (status 4, same eventId).

:class:`Simulator` yields pushes on a schedule; targets (HTTP to ``/eventRcv``, or straight to
Kafka) send them.
"""

from __future__ import annotations

import copy
import heapq
import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

FAMILIES = ("acs", "parking", "video", "linkage")
_TZ = timezone(timedelta(hours=8))  # the platform's examples are in China Standard Time

_FILES = {
    "acs": "acs_card_196883_event_acs.json",
    "parking": "parking_771760130_entry_event_pms_SYNTHETIC.json",
    "video": "video_131330_event_vss_start.json",
    "linkage0": "linkage_event_rule_status0_SYNTHETIC.json",
    "linkage4": "linkage_event_rule_status4_update_SYNTHETIC.json",
}

#: Event types each family produces (for demo subscriptions).
FAMILY_TYPES = {"acs": (196883, 196893, 198914), "parking": (771760130, 771760133),
                "video": (131330, 131331), "linkage": (131588,)}


def load_template(key: str) -> dict[str, Any]:
    path = resources.files("bridge") / "resources" / "payloads" / _FILES[key]
    return json.loads(path.read_text(encoding="utf-8"))


def _iso(moment: datetime) -> str:
    return moment.astimezone(_TZ).isoformat(timespec="milliseconds")


@dataclass(order=True)
class ScheduledPush:
    """A push due at ``at`` (seconds from the simulator's start)."""

    at: float
    seq: int
    body: dict[str, Any] = field(compare=False)
    events: int = field(compare=False, default=1)


class Simulator:
    """Generates pushes: ``rate`` events per second on average, from ``families``."""

    def __init__(self, rate: float, families: Sequence[str] = FAMILIES, seed: int | None = None,
                 clock_origin: datetime | None = None) -> None:
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.families = tuple(families)
        self.random = random.Random(seed)
        self.templates = {key: load_template(key) for key in _FILES}
        self.origin = clock_origin or datetime.now(timezone.utc)
        self._queue: list[ScheduledPush] = []
        self._seq = 0

    # --- building pushes -------------------------------------------------------------------

    def _push(self, template_key: str, at: float, events: list[dict[str, Any]]) -> None:
        body = copy.deepcopy(self.templates[template_key])
        body["params"]["sendTime"] = _iso(self.origin + timedelta(seconds=at))
        body["params"]["events"] = events
        self._seq += 1
        heapq.heappush(self._queue, ScheduledPush(at, self._seq, body, len(events)))

    def _event(self, template_key: str, at: float, **changes: Any) -> dict[str, Any]:
        event = copy.deepcopy(self.templates[template_key]["params"]["events"][0])
        event["happenTime"] = _iso(self.origin + timedelta(seconds=at))
        event.update(changes)
        return event

    def _acs(self, at: float) -> int:
        burst = self.random.randint(1, 6)
        events = []
        for _ in range(burst):
            event = self._event("acs", at, eventId=uuid.uuid4().hex.upper(),
                                eventType=self.random.choice(FAMILY_TYPES["acs"]))
            if isinstance(event.get("data"), dict):
                event["data"]["ExtEventCardNo"] = f"{self.random.randrange(10**9):010d}"
            events.append(event)
        self._push("acs", at, events)
        return burst

    def _parking(self, at: float) -> int:
        event_id = str(uuid.uuid4()).upper()
        event_type = self.random.choice(FAMILY_TYPES["parking"])
        self._push("parking", at, [self._event("parking", at, eventId=event_id, eventType=event_type)])
        later = at + self.random.uniform(0.5, 3.0)
        picture = self._event("parking", at, eventId=event_id, eventType=event_type, status=5)
        picture.setdefault("data", {})
        if isinstance(picture["data"], dict):
            picture["data"]["picUrl"] = f"http://10.0.0.20:6120/pic?{event_id}"
        self._push("parking", later, [picture])
        return 2

    def _video(self, at: float) -> int:
        event_id = str(uuid.uuid4()).upper()
        event_type = self.random.choice(FAMILY_TYPES["video"])
        self._push("video", at, [self._event("video", at, eventId=event_id, eventType=event_type,
                                             status=1)])
        stop_at = at + self.random.uniform(1.0, 8.0)
        self._push("video", stop_at, [self._event("video", at, eventId=event_id,
                                                  eventType=event_type, status=2)])
        return 2

    def _linkage(self, at: float) -> int:
        event_id = str(uuid.uuid4()).upper()
        level = self.random.choice((1, 2, 3))
        self._push("linkage0", at, [self._event("linkage0", at, eventId=event_id, eventLvl=level)])
        update_at = at + self.random.uniform(0.5, 4.0)
        self._push("linkage4", update_at, [self._event("linkage4", at, eventId=event_id,
                                                       eventLvl=level)])
        return 2

    # --- schedule --------------------------------------------------------------------------

    def pushes(self, duration: float | None = None) -> Iterator[ScheduledPush]:
        """Pushes in time order; the event rate averages ``rate`` per second."""
        makers = {"acs": self._acs, "parking": self._parking, "video": self._video,
                  "linkage": self._linkage}
        at = 0.0
        while True:
            # Every scenario that starts before the earliest queued push is generated first, so
            # follow-ups (stop, picture, update) come out in time order with the new starts.
            while (not self._queue or at <= self._queue[0].at) and (duration is None or at < duration):
                produced = makers[self.random.choice(self.families)](at)
                at += self.random.expovariate(self.rate / produced)
            if not self._queue:
                return
            # Follow-ups due after ``duration`` still go out: a start without its stop is unrealistic.
            yield heapq.heappop(self._queue)


@dataclass
class SendStats:
    pushes: int = 0
    events: int = 0
    failed: int = 0
    last_error: str = ""


async def run(simulator: Simulator, duration: float | None, send: Any, stats: SendStats,
              concurrency: int = 32) -> SendStats:
    """Send the simulator's pushes on schedule with ``await send(body)``; returns the counts.

    Sends overlap (up to ``concurrency``) so a slow answer does not delay the schedule.
    """
    import asyncio
    import time

    start = time.monotonic()
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def one(push: ScheduledPush) -> None:
        try:
            await send(push.body)
            stats.pushes += 1
            stats.events += push.events
        except Exception as exc:  # noqa: BLE001 - a failed send is counted and shown, never fatal
            stats.failed += 1
            stats.last_error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            slots.release()

    for push in simulator.pushes(duration):
        delay = push.at - (time.monotonic() - start)
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        task = asyncio.create_task(one(push))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return stats


def http_sender(client: Any, url: str, token: str | None = None) -> Any:
    """``send(body)`` that POSTs to the bridge's ingest endpoint and raises on a non-200."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Bridge-Ingest-Token"] = token

    async def send(body: dict[str, Any]) -> None:
        response = await client.post(url, content=json.dumps(body, ensure_ascii=False).encode(),
                                     headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:120]}")

    return send
