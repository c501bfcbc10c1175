"""The routing stage: ``bridge.events`` → one DeliveryTask per matching partner → ``bridge.deliveries``.

The subscription side is a global view (every worker holds the whole, single-partition registry),
so it needs no co-partitioning with ``bridge.events``; start-up checks that the registry topics
have exactly one partition, which is what makes every worker's view complete.
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from bridge.errors import TopicError
from bridge import correlation, schemas
from bridge.events import TICK_KEY, DeliveryTask, EventRecord
from bridge.matching import route
from bridge.registry import RegistryView
from bridge.settings import Settings
from bridge.topics import topic_table

log = logging.getLogger("bridge.routing")


def check_registry_partitions(settings: Settings) -> None:
    """The global view is complete only if each registry topic has one partition."""
    from bridge.kafka import admin_client

    table = topic_table(settings)
    metadata = admin_client(settings).list_topics(timeout=10)
    for logical in ("partners", "subscriptions", "config", "delivery.state"):
        name = table[logical].name
        if name not in metadata.topics:
            raise TopicError(f"{name} is missing: run `event-bridge topics create`")
        if len(metadata.topics[name].partitions) != 1:
            raise TopicError(f"{name} must have 1 partition for the global subscription view")


def register(app: faust.App, settings: Settings) -> None:
    """Add the routing agent (with status correlation) to ``app``."""
    table = topic_table(settings)
    events = app.topic(table["events"].name, key_serializer="raw", value_serializer="raw")
    deliveries = app.topic(table["deliveries"].name, key_serializer="raw", value_serializer="raw")
    lifecycle_topic = app.topic(table["lifecycle"].name, key_serializer="raw", value_serializer="raw")
    # Keyed by eventId, co-partitioned with bridge.events: one eventId always has one eventType,
    # hence one partition, so its statuses meet in one agent and one table partition.
    # Keys are eventIds (the app's raw key serializer); values JSON (its value serializer).
    states = app.Table("correlation", default=None, partitions=settings.partitions)
    ttl_s = settings.correlation_ttl_hours * 3600
    lifecycle_header = [(schemas.SCHEMA_HEADER, schemas.schema_fingerprint("lifecycle").encode())]
    # Checked before the worker starts, so a bad deployment fails at once with the reason.
    check_registry_partitions(settings)
    view = RegistryView(settings).start(wait_caught_up=None)

    async def send_all(tasks: list[DeliveryTask]) -> None:
        # Wait for Kafka's acknowledgement before the offset of this event can be committed.
        pending = [await deliveries.send(key=t.partner_id.encode(), value=t.encode()) for t in tasks]
        if pending:
            await asyncio.gather(*pending)

    async def on_tick(partition: int) -> None:
        now = time.time()
        mine = [(k, v) for k, v in list(states.items()) if v and v.get("partition") == partition]
        for key, state in mine:
            kept, release = correlation.expire(state, now, ttl_s)
            await send_all(release)
            if kept is None:
                del states[key]
            elif release:
                states[key] = kept
        # Each partition keeps its share of the bound, so a worker never holds more than it.
        excess = len(mine) - settings.correlation_max_entries // settings.partitions
        if excess > 0:  # the bound: release the oldest eventIds of this partition
            for key, state in sorted(mine, key=lambda kv: kv[1]["last"])[:excess]:
                if key in states:
                    _, release = correlation.expire(state, float("inf"), 0)
                    await send_all(release)
                    del states[key]

    @app.agent(events, name="route")
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        await asyncio.to_thread(view.wait_ready, 120.0)
        # Manual acks: Faust acks the current event when an agent is cancelled (rebalance,
        # shutdown), even mid-way; an event is acked here only once its work is done.
        manual = stream.noack()
        async for event in manual.events():
            await handle(event)
            await manual.ack(event)

    async def handle(event: faust.EventT[bytes]) -> None:
        partition = event.message.partition
        if event.key == TICK_KEY:
            await on_tick(partition)
            return
        try:
            record = EventRecord.decode(event.value)
        except (ValueError, TypeError, KeyError) as exc:
            # Ingest validated it; a record we cannot read is a bug, not a reason to stop.
            log.error("unreadable record on %s: %s", table["events"].name, exc)
            return
        statuses = view.setting("push_statuses", settings.push_statuses)
        now = time.time()
        tasks = route(record, view.by_event_type(record.event_type), view.partners, statuses, now)
        step = correlation.correlate(states.get(record.event_id), record, tasks, view.partners,
                                     partition, now)
        if step.duplicate:
            return
        await send_all(step.send)
        states[record.event_id] = step.state
        await lifecycle_topic.send(key=record.event_id.encode(),
                                   value=schemas.encode("lifecycle", correlation.lifecycle(step.state)),
                                   headers=lifecycle_header)

    @app.timer(settings.correlation_tick_s)
    async def tick() -> None:
        with_state = {v.get("partition") for v in list(states.values()) if v}
        for tp in app.assignor.assigned_actives():
            if tp.topic == events.get_topic_name() and tp.partition in with_state:
                await events.send(key=TICK_KEY, value=b"{}", partition=tp.partition)
