"""``event-bridge dev --demo``: demo partners, simulated platform traffic and a live summary.

Everything goes through the public interfaces, as a real deployment would: partners are created
with the admin API and subscribe with Artemis-signed requests; the simulator POSTs to ``/eventRcv``;
the demo partner endpoints are real HTTP servers on loopback.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bridge.delivery.records import decode_outcome
from bridge.kafka.config import client_config
from bridge.ops.simulate import FAMILY_TYPES, SendStats, Simulator, http_sender, run
from bridge.ops.onboarding import (
    PARTNERS as PARTNERS_PATH,
    Onboarded,
    create_request,
    created,
    subscribe_request,
    subscribed,
)
from bridge.settings import Settings
from bridge.topics import topic_table


@dataclass(frozen=True)
class DemoPartner:
    name: str
    path: str
    types: tuple[int, ...]
    sub_type: int = 2
    push_statuses: tuple[int, ...] | None = None
    #: The endpoint answers 500 this often (0..1); a closed port stands for "down".
    failure_rate: float = 0.0
    down: bool = False


ALL_TYPES = tuple(t for types in FAMILY_TYPES.values() for t in types)
PARTNERS = (
    DemoPartner("demo-control-room", "/control-room", ALL_TYPES, push_statuses=(0, 1, 2, 4, 5)),
    DemoPartner("demo-doors", "/doors", FAMILY_TYPES["acs"], sub_type=0),
    DemoPartner("demo-flaky", "/flaky", ALL_TYPES, failure_rate=0.5),
    DemoPartner("demo-down", "/down", FAMILY_TYPES["parking"] + FAMILY_TYPES["video"], down=True),
)


@dataclass
class Receiver:
    """The demo partners' endpoints: counts what each one received and answered.

    Only pushes of events sent in this run (``sent``) are counted: a previous run's tasks still
    on the retry tiers are delivered too, and would otherwise show up in this run's numbers.
    """

    sent: set[str] = field(default_factory=set)
    received: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    event_ids: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def app(self) -> web.Application:
        app = web.Application()
        for partner in PARTNERS:
            if not partner.down:
                app.router.add_post(partner.path, self._handler(partner))
        return app

    def _handler(self, partner: DemoPartner) -> Any:
        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            events = body.get("params", {}).get("events", [])
            if not any(event.get("eventId") in self.sent for event in events):
                return web.Response(text="OK")  # an earlier run's event: not this run's numbers
            if self.rng.random() < partner.failure_rate:
                self.failed[partner.name] += 1
                return web.Response(status=500, text="demo failure")
            self.received[partner.name] += 1
            self.event_ids[partner.name] += len(events)
            return web.Response(text="OK")

        return handle


#: What a partition created a moment ago answers until its leader is known everywhere.
_NOT_READY = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
              KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}


class LiveCounts:
    """Counts, per partner, delivery tasks routed and delivery outcomes (from the topics).

    Reads every partition from the offsets at ``since`` (so nothing written after the run began
    is missed, however long a group join would take) and counts only records of events in
    ``sent``, this run's: the tiers may still hold an earlier run's retries.
    """

    def __init__(self, settings: Settings, sent: set[str], since: float) -> None:
        self.routed: Counter[str] = Counter()
        self.results: Counter[tuple[str, str]] = Counter()
        self.sent = sent
        self._stop = threading.Event()
        table = topic_table(settings)
        self._deliveries = table["deliveries"].name
        self._consumer = Consumer(client_config(settings, **{
            "group.id": f"demo-summary-{uuid.uuid4().hex}",  # assign() only: never commits
            "enable.auto.commit": False}))
        topics = [self._deliveries, table["outcomes"].name]
        metadata = self._consumer.list_topics(timeout=10)
        at = [TopicPartition(topic, p, int(since * 1000)) for topic in topics
              for p in metadata.topics[topic].partitions]
        # An offset of -1 (no record at or after ``since`` yet) means the partition's end.
        self._consumer.assign(self._offsets_for_times(at))
        self._thread = threading.Thread(target=self._run, daemon=True, name="demo-counts")
        self._thread.start()

    def _offsets_for_times(self, at: list[TopicPartition], timeout_s: float = 60.0) -> list[TopicPartition]:
        # Right after `topics create` (a first `make run`) the new partitions may have no leader
        # yet: the broker answers NOT_LEADER_FOR_PARTITION for a moment (seen on a fresh clone).
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return list(self._consumer.offsets_for_times(at, timeout=10))
            except KafkaException as exc:
                error = exc.args[0]
                if (not isinstance(error, KafkaError) or error.code() not in _NOT_READY
                        or time.monotonic() > deadline):
                    raise
                time.sleep(0.5)

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.3)
            if msg is None or msg.error() is not None or not msg.key():
                continue
            partner = msg.key().decode()
            if msg.topic() == self._deliveries:
                if self.sent.intersection(json.loads(msg.value()).get("event_ids", ())):
                    self.routed[partner] += 1
            else:
                record = decode_outcome(msg.value())
                if self.sent.intersection(record["event_ids"]):
                    self.results[(partner, record["result"])] += 1
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3)


class Demo:
    def __init__(self, settings: Settings, console: Console, rate: float = 10.0,
                 receiver_port: int = 18_080) -> None:
        self.settings = settings
        self.console = console
        self.rate = rate
        self.port = receiver_port
        self.base = f"http://{settings.http_host}:{settings.http_port}"
        assert settings.admin_token is not None
        self.admin_token = settings.admin_token.get_secret_value()
        self.admin = {"Authorization": f"Bearer {self.admin_token}"}
        self.partner_ids: dict[str, str] = {}

    async def _wait_ready(self, client: httpx.AsyncClient) -> None:
        for _ in range(240):
            try:
                if (await client.get(f"{self.base}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the api at {self.base} did not become ready")

    async def _ensure_partner(self, client: httpx.AsyncClient, demo: DemoPartner) -> Onboarded:
        """Create the demo partner, or re-key the one a previous run created."""
        existing = (await client.get(f"{self.base}{PARTNERS_PATH}", headers=self.admin)).json()
        found = next((p for p in existing if p["name"] == demo.name), None)
        delivery = {"pushStatuses": list(demo.push_statuses) if demo.push_statuses else None}
        if found is None:
            partner = created(await client.send(create_request(
                client, self.admin_token, demo.name, user_id="demo", delivery=delivery)))
        else:
            await client.patch(f"{self.base}{PARTNERS_PATH}/{found['id']}", headers=self.admin,
                               json={"state": "active", "delivery": delivery})
            partner = created(await client.post(f"{self.base}{PARTNERS_PATH}/{found['id']}/rotate-secret",
                                                headers=self.admin))
        self.partner_ids[partner.id] = demo.name
        return partner

    async def _subscribe(self, client: httpx.AsyncClient, demo: DemoPartner) -> None:
        partner = await self._ensure_partner(client, demo)
        # A closed port on loopback stands for a partner whose endpoint is down.
        port = self.port + 1 if demo.down else self.port
        subscribed(await client.send(subscribe_request(
            client, partner, demo.types, f"http://127.0.0.1:{port}{demo.path}", sub_type=demo.sub_type)))

    def _table(self, receiver: Receiver, counts: LiveCounts, stats: SendStats) -> Table:
        table = Table(title=f"event-bridge demo — platform sent {stats.events} events in "
                            f"{stats.pushes} pushes ({stats.failed} failed)",
                      caption="Every column counts this run's events only. routed: delivery tasks "
                              "routing made for the partner; received: pushes its endpoint answered "
                              "2xx; delivered: attempts recorded as delivered in bridge.outcomes; "
                              "retries: failed attempts rescheduled on a retry tier; dead: tasks "
                              "that gave up (bridge.deliveries.dlq, `event-bridge dlq list`)")
        for column in ("partner", "endpoint", "routed", "received", "delivered", "retries", "dead"):
            table.add_column(column, justify="left" if column in ("partner", "endpoint") else "right")
        for demo in PARTNERS:
            pid = next((k for k, v in self.partner_ids.items() if v == demo.name), "")
            endpoint = "down (closed port)" if demo.down else (
                f"fails {demo.failure_rate:.0%}" if demo.failure_rate else "healthy")
            table.add_row(demo.name, endpoint, str(counts.routed[pid]), str(receiver.received[demo.name]),
                          str(counts.results[(pid, "delivered")]), str(counts.results[(pid, "retry")]),
                          str(counts.results[(pid, "dead")]))
        return table

    async def run(self) -> None:
        started = time.time()
        sent: set[str] = set()  # eventIds the simulator sent in this run
        receiver = Receiver(sent)
        runner = web.AppRunner(receiver.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        counts = LiveCounts(self.settings, sent, started)
        stats = SendStats()
        try:
            async with httpx.AsyncClient(base_url=self.base, timeout=15) as client:
                with self.console.status("waiting for the api, creating demo partners…"):
                    await self._wait_ready(client)
                    for demo in PARTNERS:
                        await self._subscribe(client, demo)
                simulator = Simulator(self.rate)
                send = http_sender(client, self.base + self.settings.ingest_path)

                async def send_recorded(body: dict[str, Any]) -> None:
                    # Recorded before the send: a push can come back before the answer does.
                    sent.update(event["eventId"] for event in body["params"]["events"])
                    await send(body)

                traffic = asyncio.create_task(run(simulator, None, send_recorded, stats))
                with Live(self._table(receiver, counts, stats), console=self.console,
                          refresh_per_second=1) as live:
                    while not traffic.done():
                        live.update(self._table(receiver, counts, stats))
                        await asyncio.sleep(1)
                    await traffic
        finally:
            counts.stop()
            await runner.cleanup()
