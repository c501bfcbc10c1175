"""Partners, subscriptions and runtime settings: compacted topics and their in-process view.

Kafka is the only state store. Three compacted, single-partition topics hold the registry:

- ``partners``: key ``partnerId``, value a :class:`Partner` as JSON (secrets encrypted), tombstone on delete;
- ``subscriptions``: key ``partnerId:eventType``, value a :class:`Subscription` as JSON, tombstone on
  unsubscribe. One key per (partner, type) means writers never read-modify-write a shared record, so
  two API instances cannot lose each other's changes, and one partner's change never touches another's;
- ``config``: key a setting name (``push_statuses``…), value JSON.

:class:`RegistryView` reads all three from the beginning in a background thread and keeps the latest
value per key; :class:`RegistryWriter` produces a change and waits until the view has applied it,
which gives the caller read-your-writes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from prometheus_client import Gauge

from bridge.errors import KafkaUnavailable
from bridge.kafka import AsyncProducer, client_config
from bridge.settings import Settings
from bridge.topics import topic_table

#: Views reading the registry in this process (each is one consumer thread over every registry
#: topic): a worker shares one between its stages.
VIEWS = Gauge("bridge_registry_views", "Registry views running in this process")

PartnerState = Literal["active", "disabled"]
LinkageMode = Literal["separate", "merged"]
PictureMode = Literal["passthrough", "attach"]


@dataclass(frozen=True)
class EncryptedSecret:
    """One appSecret, encrypted with ``BRIDGE_SECRET_KEY`` (Fernet token)."""

    token: str
    created_at: float
    #: After rotation the old secret stays valid until this time; ``None`` for the current one.
    expires_at: float | None = None


@dataclass(frozen=True)
class DeliveryPrefs:
    """Per-partner delivery settings (used by routing, correlation and delivery)."""

    timeout_s: float = 5.0
    max_in_flight: int = 16
    #: Statuses pushed to this partner; ``None`` follows the global setting.
    push_statuses: tuple[int, ...] | None = None
    linkage_mode: LinkageMode = "separate"
    #: Merged mode: how long a linkage status 0 waits for its status-4 update, in seconds.
    merge_wait_s: float = 10.0
    #: ``attach``: a status-5 picture is pushed as an update of the original event.
    picture_mode: PictureMode = "passthrough"
    #: Standard Webhooks signatures on pushes (off: receivers see exactly the platform's push).
    signing: bool = False
    #: One push in flight at a time, in order.
    ordered: bool = False
    #: TLS verification of https destinations; off only by this explicit setting.
    verify_tls: bool = True
    #: Events one push may carry when several wait for this partner (1: one event per push, as
    #: the platform pushes; at most 50, the platform's own limit per push). Never waited for.
    max_batch: int = 1


@dataclass(frozen=True)
class Partner:
    """A third party, bound to one appKey/appSecret and one platform ``userId``."""

    id: str
    name: str
    user_id: str
    app_key: str
    secrets: tuple[EncryptedSecret, ...]
    #: Event types the partner's user may receive; ``None`` means all.
    event_types: tuple[int, ...] | None
    state: PartnerState = "active"
    delivery: DeliveryPrefs = field(default_factory=DeliveryPrefs)
    #: Legacy opt-in: its Artemis calls may go without a signed ``x-ca-timestamp`` (minimal
    #: clients); off by default, because such a call can be replayed at any later time.
    allow_unsigned_timestamp: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    def permits(self, event_type: int) -> bool:
        return self.event_types is None or event_type in self.event_types

    def public(self) -> dict[str, Any]:
        """The partner as the admin API shows it: never the secrets."""
        return {
            "id": self.id,
            "name": self.name,
            "userId": self.user_id,
            "appKey": self.app_key,
            "eventTypes": list(self.event_types) if self.event_types is not None else None,
            "state": self.state,
            "delivery": _camel(asdict(self.delivery)),
            "allowUnsignedTimestamp": self.allow_unsigned_timestamp,
            "secretRotation": [
                {"createdAt": s.created_at, "expiresAt": s.expires_at} for s in self.secrets
            ],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True)
class Subscription:
    """One partner's subscription to one event type (Artemis ``eventSubscriptionByEventTypes``)."""

    partner_id: str
    event_type: int
    event_dest: str
    #: 0 raw events only, 1 linkage events only, 2 both (B2).
    sub_type: int = 0
    #: Linkage levels; meaningful only for sub_type 1 and 2 (B3).
    event_lvl: tuple[int, ...] = (0, 1, 2, 3)
    token: str | None = None
    pass_back: int | None = None
    updated_at: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.partner_id}:{self.event_type}"


def _camel(values: Mapping[str, Any]) -> dict[str, Any]:
    def conv(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {conv(k): list(v) if isinstance(v, tuple) else v for k, v in values.items()}


# --- encoding -------------------------------------------------------------------------------


def encode_partner(partner: Partner) -> bytes:
    return json.dumps(asdict(partner), separators=(",", ":")).encode()


def decode_partner(data: bytes) -> Partner:
    raw = json.loads(data)
    prefs = raw.pop("delivery", {}) or {}
    if prefs.get("push_statuses") is not None:
        prefs["push_statuses"] = tuple(prefs["push_statuses"])
    return Partner(
        **{
            **raw,
            "secrets": tuple(EncryptedSecret(**s) for s in raw["secrets"]),
            "event_types": tuple(raw["event_types"]) if raw["event_types"] is not None else None,
            "delivery": DeliveryPrefs(**prefs),
        }
    )


def encode_subscription(sub: Subscription) -> bytes:
    return json.dumps(asdict(sub), separators=(",", ":")).encode()


def decode_subscription(data: bytes) -> Subscription:
    raw = json.loads(data)
    return Subscription(**{**raw, "event_lvl": tuple(raw["event_lvl"])})


# --- the view -------------------------------------------------------------------------------


class RegistryView:
    """The registry materialised in this process, kept current by a background consumer.

    Readers get consistent snapshots: each record replaces a whole dict entry under a lock, and
    the by-type index is rebuilt lazily after changes.
    """

    def __init__(self, settings: Settings) -> None:
        table = topic_table(settings)
        self.topics = {
            table["partners"].name: "partners",
            table["subscriptions"].name: "subscriptions",
            table["config"].name: "config",
            table["delivery.state"].name: "breakers",
            table["replays"].name: "replays",
        }
        self._settings = settings
        self._lock = threading.Condition()
        self.partners: dict[str, Partner] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.config: dict[str, Any] = {}
        #: Circuit breaker states published by delivery workers, by destination.
        self.breakers: dict[str, Any] = {}
        #: Replay jobs by id (bridge.replay_jobs), and the ids whose cancellation was asked for.
        self.replays: dict[str, dict[str, Any]] = {}
        self.replay_cancels: set[str] = set()
        self._by_type: dict[int, tuple[Subscription, ...]] | None = None
        self._applied: dict[str, int] = {}  # topic -> next offset to read
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    # lifecycle

    def start(self, wait_caught_up: float | None = 30.0) -> RegistryView:
        """Start the background reader; optionally wait until it has read the whole registry.

        Without waiting, the view keeps trying to reach Kafka in the background and
        :meth:`wait_ready` tells callers whether it has caught up yet.
        """
        self._thread = threading.Thread(target=self._run, name="registry-view", daemon=True)
        self._thread.start()
        VIEWS.inc()
        if wait_caught_up is not None:
            self.wait_ready(wait_caught_up)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Block until the view holds everything written before it started (else raise)."""
        if not self._ready.wait(timeout):
            raise KafkaUnavailable(
                f"the registry is not loaded: cannot read its topics at "
                f"{self._settings.kafka_bootstrap} ({self.error or 'no answer yet'}); "
                "is Kafka up and were the topics created (`event-bridge topics create`)?"
            )

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def _connect(self) -> tuple[Consumer, dict[str, int]]:
        """A consumer assigned to the registry from the beginning, and the end offsets now."""
        consumer = Consumer(
            client_config(self._settings,
                **{
                    # Never commits: every process reads the whole registry from the start.
                    "group.id": f"registry-view-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 50,
                    "topic.metadata.refresh.interval.ms": 1000,
                }
            )
        )
        while not self._stop.is_set():
            try:
                ends = {
                    topic: consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=2)[1]
                    for topic in self.topics
                }
            except Exception as exc:  # KafkaException: broker down or topics not (yet) known
                self.error = str(exc)
                self._stop.wait(0.3)
                continue
            consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in self.topics])
            return consumer, ends
        consumer.close()
        raise KafkaUnavailable("registry view stopped before it connected")

    def stop(self) -> None:
        if self._thread and not self._stop.is_set():
            VIEWS.dec()
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            consumer, ends = self._connect()
        except KafkaUnavailable:
            return
        try:
            while not self._stop.is_set():
                if not self._ready.is_set() and all(
                    self._applied.get(t, 0) >= end for t, end in ends.items()
                ):
                    self._ready.set()
                # What is there now, else wait for the first record: consume(n, t) would wait the
                # whole timeout unless n records are ready, delaying read-your-writes.
                msgs = consumer.consume(500, 0) or consumer.consume(1, 0.2)
                if not msgs:
                    continue
                with self._lock:
                    for msg in msgs:
                        if msg.error():
                            if msg.error().code() != KafkaError._PARTITION_EOF:
                                self.error = msg.error().str()
                            continue
                        kind = self.topics[msg.topic()]
                        key = msg.key().decode() if msg.key() else ""
                        self._apply(kind, key, msg.value())
                        self._applied[msg.topic()] = msg.offset() + 1
                    self._by_type = None
                    self._lock.notify_all()
        finally:
            consumer.close()

    def _apply(self, kind: str, key: str, value: bytes | None) -> None:
        try:
            if kind == "partners":
                if value is None:
                    self.partners.pop(key, None)
                else:
                    self.partners[key] = decode_partner(value)
            elif kind == "subscriptions":
                if value is None:
                    self.subscriptions.pop(key, None)
                else:
                    self.subscriptions[key] = decode_subscription(value)
            elif kind == "replays":
                self._apply_replay(key, value)
            elif kind == "breakers":
                if value is None:
                    self.breakers.pop(key, None)
                else:
                    self.breakers[key] = json.loads(value)
            elif value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = json.loads(value)
        except (ValueError, TypeError, KeyError) as exc:
            # A record this version cannot read must not stop the view; say which one.
            self.error = f"unreadable {kind} record {key!r}: {exc}"

    def _apply_replay(self, key: str, value: bytes | None) -> None:
        kind, _, job_id = key.partition(":")
        if kind == "cancel":
            if value is None:
                self.replay_cancels.discard(job_id)
            else:
                self.replay_cancels.add(job_id)
        elif value is None:
            self.replays.pop(job_id, None)
        else:
            job = json.loads(value)
            if job_record_applies(self.replays.get(job_id), job):
                self.replays[job_id] = job

    def wait_applied(self, topic: str, offset: int, timeout: float = 10.0) -> None:
        """Block until the record at ``offset`` of ``topic`` has been applied."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._applied.get(topic, 0) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaUnavailable(f"the registry view did not catch up on {topic} in {timeout}s")
                self._lock.wait(remaining)

    # reads

    def partner(self, partner_id: str) -> Partner | None:
        with self._lock:
            return self.partners.get(partner_id)

    def partner_by_app_key(self, app_key: str) -> Partner | None:
        with self._lock:
            return next((p for p in self.partners.values() if p.app_key == app_key), None)

    def all_partners(self) -> list[Partner]:
        with self._lock:
            return sorted(self.partners.values(), key=lambda p: p.created_at)

    def subscriptions_of(self, partner_id: str) -> list[Subscription]:
        with self._lock:
            return sorted((s for s in self.subscriptions.values() if s.partner_id == partner_id),
                          key=lambda s: s.event_type)

    def by_event_type(self, event_type: int) -> tuple[Subscription, ...]:
        """Subscriptions to ``event_type`` across partners (index rebuilt after changes)."""
        with self._lock:
            if self._by_type is None:
                index: dict[int, list[Subscription]] = {}
                for sub in self.subscriptions.values():
                    index.setdefault(sub.event_type, []).append(sub)
                self._by_type = {t: tuple(v) for t, v in index.items()}
            return self._by_type.get(event_type, ())

    def setting(self, name: str, default: Any = None) -> Any:
        with self._lock:
            return self.config.get(name, default)

    def replay(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            job = self.replays.get(job_id)
            return None if job is None else {**job, "cancelRequested": job_id in self.replay_cancels}

    def all_replays(self) -> list[dict[str, Any]]:
        with self._lock:
            ids = sorted(self.replays, key=lambda i: self.replays[i].get("startedAt", 0))
        return [job for job in map(self.replay, ids) if job is not None]

    def replay_cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self.replay_cancels


def job_record_applies(current: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether a replay job record replaces ``current``: the ownership rule every view applies.

    A job's owner (the api running it) writes records of its ``epoch``; another api takes an
    orphaned running job over by writing the next epoch. Views apply records in log order, so
    the first claim of an epoch wins everywhere and a late claim, or a write of an owner that
    was taken over, is ignored. If compaction kept a losing claim as a job's last record, that
    owner never reports and the job is simply taken over again.
    """
    if current is None:
        return True
    if new.get("epoch") == current.get("epoch"):
        return bool(new.get("owner") == current.get("owner"))
    return bool(new.get("epoch") == current.get("epoch", 0) + 1 and current.get("state") == "running")


class RegistryWriter:
    """Writes registry changes and returns once the local view shows them."""

    def __init__(self, settings: Settings, producer: AsyncProducer, view: RegistryView) -> None:
        table = topic_table(settings)
        self.partners_topic = table["partners"].name
        self.subscriptions_topic = table["subscriptions"].name
        self.config_topic = table["config"].name
        self.producer = producer
        self.view = view

    async def _write(self, records: Iterable[tuple[str, str, bytes | None]]) -> None:
        batch = [(topic, key.encode(), value, None) for topic, key, value in records]
        if not batch:
            return
        positions = await self.producer.send_many(batch)  # type: ignore[arg-type]
        last: dict[str, int] = {}
        for (topic, _key, _value, _headers), (_partition, offset) in zip(batch, positions):
            last[topic] = max(last.get(topic, -1), offset)
        for topic, offset in last.items():
            await asyncio.to_thread(self.view.wait_applied, topic, offset)

    async def put_partner(self, partner: Partner) -> None:
        await self._write([(self.partners_topic, partner.id, encode_partner(partner))])

    async def delete_partner(self, partner_id: str) -> None:
        subs = self.view.subscriptions_of(partner_id)
        await self._write(
            [(self.subscriptions_topic, s.key, None) for s in subs]
            + [(self.partners_topic, partner_id, None)]
        )

    async def put_subscriptions(self, subs: Iterable[Subscription]) -> None:
        await self._write([(self.subscriptions_topic, s.key, encode_subscription(s)) for s in subs])

    async def delete_subscriptions(self, subs: Iterable[Subscription]) -> None:
        await self._write([(self.subscriptions_topic, s.key, None) for s in subs])

    async def put_setting(self, name: str, value: Any) -> None:
        await self._write([(self.config_topic, name, json.dumps(value).encode())])


def with_updates(partner: Partner, **changes: Any) -> Partner:
    """A copy of ``partner`` with ``changes`` and a fresh ``updated_at``."""
    return replace(partner, updated_at=time.time(), **changes)
