"""The bridge's topics on the broker: create them from the topic table, find the missing ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import KafkaUnavailable, TopicError
from bridge.kafka.config import check_connection, client_config
from bridge.settings import Settings
from bridge.topics import TopicSpec, topic_table


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


@dataclass(frozen=True)
class TopicReport:
    """What ``ensure_topics`` did for one topic."""

    name: str
    partitions: int
    action: str  # "created" | "exists"


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None, timeout: float = 30.0
) -> list[TopicReport]:
    """Create the bridge's topics; idempotent.

    Topics that already exist are checked: a partition count that differs from the table is
    refused, because keyed topics joined by the routing stage must stay co-partitioned and
    Kafka cannot shrink a topic.
    """
    specs = list(specs if specs is not None else topic_table(settings).values())
    check_connection(settings, timeout)
    admin = admin_client(settings)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    existing = {name: len(t.partitions) for name, t in metadata.topics.items()}
    mismatched = [
        f"{s.name} has {existing[s.name]} partitions, expected {s.partitions}"
        for s in specs
        if s.name in existing and existing[s.name] != s.partitions
    ]
    if mismatched:
        raise TopicError(
            "existing topics do not match the topic table: " + "; ".join(mismatched)
            + ". Set BRIDGE_PARTITIONS to the existing count, or use a new BRIDGE_TOPIC_PREFIX."
        )
    reports = [TopicReport(s.name, s.partitions, "exists") for s in specs if s.name in existing]
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, settings.replication_factor, config=s.config())
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result()
                reports.append(TopicReport(spec.name, spec.partitions, "created"))
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # lost a race: fine
                    raise TopicError(f"creating {spec.name} failed: {exc}") from exc
                reports.append(TopicReport(spec.name, spec.partitions, "exists"))
    return sorted(reports, key=lambda r: r.name)


def missing_topics(settings: Settings, timeout: float = 5.0) -> list[str]:
    """Names from the topic table that the broker does not have (raises if unreachable)."""
    try:
        metadata = admin_client(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    return sorted(s.name for s in topic_table(settings).values() if s.name not in metadata.topics)
