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
from bridge.events import EventRecord
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
    """Add the routing agent to ``app``."""
    table = topic_table(settings)
    events = app.topic(table["events"].name, key_serializer="raw", value_serializer="raw")
    deliveries = app.topic(table["deliveries"].name, key_serializer="raw", value_serializer="raw")
    # Checked before the worker starts, so a bad deployment fails at once with the reason.
    check_registry_partitions(settings)
    view = RegistryView(settings).start(wait_caught_up=None)

    @app.agent(events, name="route")
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        await asyncio.to_thread(view.wait_ready, 120.0)
        async for value in stream:
            try:
                record = EventRecord.decode(value)
            except (ValueError, TypeError, KeyError) as exc:
                # Ingest validated it; a record we cannot read is a bug, not a reason to stop.
                log.error("unreadable record on %s: %s", table["events"].name, exc)
                continue
            statuses = view.setting("push_statuses", settings.push_statuses)
            tasks = route(record, view.by_event_type(record.event_type), view.partners,
                          statuses, time.time())
            # Wait for Kafka's acknowledgement before the offset of this event can be committed.
            pending = [await deliveries.send(key=t.partner_id.encode(), value=t.encode()) for t in tasks]
            if pending:
                await asyncio.gather(*pending)
