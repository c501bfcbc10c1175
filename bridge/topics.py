"""Every topic the bridge owns, declared once.

The table is data: names (with the configurable prefix), what the key means, partition counts,
compaction and retention. ``event-bridge topics create`` and the start-up checks read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.settings import Settings

HOUR_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    """One topic's facts."""

    #: Logical name used in code (``events``, ``deliveries``…).
    logical: str
    #: Full name on the broker (prefix + logical name).
    name: str
    #: What the record key is.
    key: str
    #: Partition count; joined topics share it (co-partitioning).
    partitions: int
    #: Log compaction (registry topics) instead of time retention.
    compacted: bool = False
    #: Time retention in ms; ``-1`` keeps forever (compacted registries).
    retention_ms: int = 7 * 24 * HOUR_MS
    #: A compacted topic whose keys also expire after ``retention_ms`` (state about records of
    #: a topic with time retention, which would otherwise outlive them forever).
    expiring: bool = False

    def config(self) -> dict[str, str]:
        """Topic-level configuration for CreateTopics."""
        if self.compacted and self.expiring:
            return {"cleanup.policy": "compact,delete", "retention.ms": str(self.retention_ms),
                    "min.compaction.lag.ms": "0"}
        if self.compacted:
            return {"cleanup.policy": "compact", "retention.ms": "-1", "min.compaction.lag.ms": "0"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


def retry_tier_name(tier: int) -> str:
    """Logical name of retry tier ``tier`` (1-based)."""
    return f"deliveries.retry.{tier}"


def topic_table(settings: Settings) -> dict[str, TopicSpec]:
    """The bridge's topics for ``settings``, by logical name."""
    p = settings.partitions
    prefix = settings.topic_prefix
    events_retention = settings.events_retention_hours * HOUR_MS

    def spec(logical: str, key: str, partitions: int = p, **kw: object) -> TopicSpec:
        return TopicSpec(logical, prefix + logical, key, partitions, **kw)  # type: ignore[arg-type]

    specs = [
        spec("events", "eventType", retention_ms=events_retention),
        # Events of a push that failed validation, with the reason: kept, never silently dropped.
        spec("events.rejected", "eventType", 1, retention_ms=30 * 24 * HOUR_MS),
        # Registries: one partition each, so every reader sees one total order of changes.
        spec("partners", "partnerId", 1, compacted=True),
        spec("subscriptions", "partnerId:eventType", 1, compacted=True),
        spec("config", "setting name", 1, compacted=True),
        # Delivery state other processes show (circuit breakers), written by delivery workers.
        spec("delivery.state", "destination", 1, compacted=True),
        # Replay jobs (state, progress, cancel requests) shared by every api replica.
        spec("replays", "job:<id> | cancel:<id>", 1, compacted=True),
        # Artemis nonces of verified requests, shared by every api replica (bridge.nonces). The
        # store reads back one nonce window (twice the signature window); keep twice that.
        spec("nonces", "sha256(appKey, nonce)",
             retention_ms=max(HOUR_MS, 4 * settings.signature_window_s * 1000)),
        spec("deliveries", "partnerId"),
        *[
            spec(retry_tier_name(tier), "partnerId")
            for tier in range(1, len(settings.retry_schedule) + 1)
        ],
        spec("deliveries.dlq", "partnerId", retention_ms=30 * 24 * HOUR_MS),
        # Which dead letters a redrive settled. A state is written after its letter, so with the
        # same retention it is removed only after the letter itself.
        spec("deliveries.dlq.state", "dead letter id (partition:offset)", 1, compacted=True,
             expiring=True, retention_ms=30 * 24 * HOUR_MS),
        spec("outcomes", "partnerId", retention_ms=events_retention),
        spec("lifecycle", "eventId", retention_ms=events_retention),
        # Routing's correlation state, co-partitioned with events (one eventId, one eventType).
        spec("correlation", "eventId", compacted=True),
        spec("analytics.events", "eventType", retention_ms=events_retention),
    ]
    return {s.logical: s for s in specs}
