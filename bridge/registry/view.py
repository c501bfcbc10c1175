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

import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from prometheus_client import Gauge

from bridge.errors import KafkaUnavailable
from bridge.kafka.config import client_config
from bridge.registry.models import Partner, Subscription
from bridge.settings import Settings
from bridge.topics import topic_table

#: Views reading the registry in this process (each is one consumer thread over every registry
#: topic): a worker shares one between its stages.
VIEWS = Gauge("bridge_registry_views", "Registry views running in this process")



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
        #: Replay jobs by id (bridge.feeds.replay_jobs), and the ids whose cancellation was asked for.
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
                    self.partners[key] = Partner.model_validate_json(value)
            elif kind == "subscriptions":
                if value is None:
                    self.subscriptions.pop(key, None)
                else:
                    self.subscriptions[key] = Subscription.model_validate_json(value)
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
