"""The routing stage: the router in the transactional loop, after checking the topics it needs."""

from __future__ import annotations

from bridge.errors import TopicError
from bridge.routing.router import Router
from bridge.runtime.txloop import TransactionalLoop, run_in_thread
from bridge.runtime.worker import Stage, Worker
from bridge.settings import Settings
from bridge.topics import topic_table


def check_registry_partitions(settings: Settings) -> None:
    """The global view is complete only if each registry topic has one partition."""
    from bridge.kafka.admin import admin_client

    table = topic_table(settings)
    metadata = admin_client(settings).list_topics(timeout=10)
    for logical in ("partners", "subscriptions", "config", "delivery.state"):
        name = table[logical].name
        if name not in metadata.topics:
            raise TopicError(f"{name} is missing: run `event-bridge topics create`")
        if len(metadata.topics[name].partitions) != 1:
            raise TopicError(f"{name} must have 1 partition for the global subscription view")
    events, changelog = table["events"].name, table["correlation"].name
    if changelog not in metadata.topics:
        raise TopicError(f"{changelog} is missing: run `event-bridge topics create`")
    if len(metadata.topics[changelog].partitions) != len(metadata.topics[events].partitions):
        raise TopicError(f"{changelog} must have as many partitions as {events} (co-partitioned)")


def stage(settings: Settings) -> Stage:
    """The routing loop (with status correlation), after checking the topics it relies on."""
    # Checked before the worker starts, so a bad deployment fails at once with the reason.
    check_registry_partitions(settings)
    events = topic_table(settings)["events"].name

    async def run(worker: Worker) -> None:
        router = Router(settings, await worker.registry())
        loop = TransactionalLoop(settings, "route", events, router, tick_s=settings.correlation_tick_s)
        await run_in_thread(loop, worker.stop, "routing")

    return Stage("routing", run)
