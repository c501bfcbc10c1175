"""confluent-kafka: admin, the awaitable producer, the read-to-end reader.

The one place that configures librdkafka clients (:func:`client_config`: connection and security
settings, then ``BRIDGE_KAFKA_EXTRA``, then the caller's own properties) and where confluent-kafka
errors become :mod:`bridge.errors` (style rule 3).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import KafkaUnavailable, RecordTooLarge, TopicError
from bridge.settings import Settings
from bridge.topics import TopicSpec, topic_table


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The configuration of every Producer, Consumer and AdminClient the bridge creates."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings validator requires it
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
    if settings.kafka_ssl_key_password is not None:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    config.update(settings.kafka_extra)
    config.update(overrides)
    return config


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings))


def check_connection(settings: Settings, timeout: float = 15.0) -> None:
    """Refuse credentials or TLS settings the brokers reject, with the reason, at start-up.

    librdkafka retries a failed authentication forever in the background; without this check a
    process with a wrong password would only ever report "not ready". An unreachable broker is not
    an error here (the API answers /healthz without Kafka and clients reconnect); a refusal is.
    """
    refusals: list[str] = []
    unreachable: list[str] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in _REFUSALS:
            refusals.append(error.str())
        elif error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
            unreachable.append(error.str())

    admin = AdminClient(client_config(settings, error_cb=on_error, logger=_Quiet()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0.2)  # serves error_cb
            if refusals:
                raise KafkaUnavailable(_refusal(settings, refusals[0])) from None
            if unreachable:  # nothing answers: not a refusal; the caller's own retries apply
                return
            continue
        admin.poll(0)
        if refusals:
            raise KafkaUnavailable(_refusal(settings, refusals[0]))
        return


_REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED,
                       KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})


def _refusal(settings: Settings, reason: str) -> str:
    who = (f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})"
           if settings.kafka_security_protocol.startswith("SASL_") else "this client")
    return (f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol}) refused {who}: "
            f"{reason}. Check BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD and the TLS "
            "settings (BRIDGE_KAFKA_SSL_CA_FILE).")


class _Quiet:
    """The check reports the refusal itself; librdkafka's own log lines would repeat it."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None


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


class AsyncProducer:
    """An idempotent, ``acks=all`` producer whose sends can be awaited.

    librdkafka runs its own threads; a poller thread serves delivery reports so that the event
    loop never blocks, and each report resolves the future of the send that made it. The reports
    one ``poll`` serves reach the event loop together (one wake-up, not one per record: at a few
    thousand records/s the wake-ups were a visible share of the worker's profile).
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._config = client_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                # The caller answers the platform; bound how long a write may hang when Kafka is down.
                "message.timeout.ms": 10_000,
                "socket.connection.setup.timeout.ms": 5_000,
                **overrides,
            }
        )
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        #: Reports served by the current poll: (future, error, partition, offset).
        self._reports: list[tuple[asyncio.Future[tuple[int, int]], KafkaError | None, int, int]] = []
        self._reports_lock = threading.Lock()  # the poller and a closing flush both serve reports

    def _ensure(self) -> Producer:
        # Created on first use so that constructing the API needs no network.
        if self._producer is None:
            self._producer = Producer(self._config)
            self._poller = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
            self._poller.start()
        return self._producer

    def _poll(self) -> None:
        while not self._stop.is_set():
            assert self._producer is not None
            self._producer.poll(0.1)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the reports served so far to their event loops, one call per loop."""
        with self._reports_lock:
            reports, self._reports = self._reports, []
        if not reports:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for report in reports:
            by_loop.setdefault(report[0].get_loop(), []).append(report)
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, batch)
            except RuntimeError:  # that loop is closed: nobody waits for these any more
                pass

    def _report(self, future: asyncio.Future[tuple[int, int]], err: KafkaError | None, msg: Any) -> None:
        # On the poller thread (or the closing thread's flush), inside librdkafka's poll.
        with self._reports_lock:
            self._reports.append((future, err, msg.partition(), msg.offset()))

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Produce one record and wait for the broker's acknowledgement; returns (partition, offset)."""
        return (await self.send_many([(topic, key, value, headers)]))[0]

    async def send_many(
        self, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]]
    ) -> list[tuple[int, int]]:
        """Produce records and return only when every one is acknowledged (else raise).

        Returns the (partition, offset) of each record, in order.
        """
        loop = asyncio.get_running_loop()
        producer = self._ensure()
        futures: list[asyncio.Future[tuple[int, int]]] = []
        for topic, key, value, headers in records:
            future: asyncio.Future[tuple[int, int]] = loop.create_future()
            report = functools.partial(self._report, future)
            while True:
                try:
                    producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                    break
                except BufferError:  # local queue full: let the poller drain it
                    await asyncio.sleep(0.01)
                except KafkaException as exc:
                    if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                        raise RecordTooLarge(
                            f"a record of {len(value)} bytes is larger than Kafka accepts", "body"
                        ) from exc
                    raise KafkaUnavailable(f"cannot produce to {topic}: {exc}") from exc
            futures.append(future)
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._stop.set()
            if self._poller:
                self._poller.join(timeout=2)
            self._hand_over()  # what the flush served
            self._producer = None


def _settle_all(reports: list[tuple[asyncio.Future[tuple[int, int]], KafkaError | None, int, int]]) -> None:
    for future, err, partition, offset in reports:
        _settle(future, err, partition, offset)


def _settle(future: asyncio.Future[tuple[int, int]], err: KafkaError | None, partition: int,
            offset: int) -> None:
    if future.done():
        return
    if err is None:
        future.set_result((partition, offset))
    elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        future.set_exception(RecordTooLarge(f"Kafka refused the record: {err.str()}", "body"))
    else:
        future.set_exception(KafkaUnavailable(f"Kafka did not accept the record: {err.str()}"))


def read_to_end(config: dict[str, Any], start: list[TopicPartition], timeout_s: float) -> Iterator[Any]:
    """The messages of ``start``'s partitions, from its offsets to each partition's end.

    End = the end when reading began: the last stable offset under read_committed (transaction
    markers are stepped over, open transactions waited for), found with ``enable.partition.eof``.
    Raises ``KafkaUnavailable`` on a consumer error, ``TimeoutError`` past ``timeout_s``.
    """
    reader = Consumer({**config, "enable.auto.commit": False, "enable.partition.eof": True,
                       "fetch.wait.max.ms": 50})
    try:
        reader.assign(start)
        pending = {(tp.topic, tp.partition) for tp in start}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(pending)} to the end took over {timeout_s:.0f} s")
            for message in reader.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
                else:
                    raise KafkaUnavailable(f"reading {message.topic()}: {error.str()}")
    finally:
        reader.close()
