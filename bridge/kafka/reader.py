"""The topic-range reader: partitions of one topic read over a range, once, under read_committed.

Every bounded read of the bridge's own topics goes through :class:`TopicReader`: restoring a
changelog, the delivered ids after a restart, dead letters and outcomes, a replay, an export. A
range starts at an offset (or the beginning) or at a time (:meth:`TopicReader.offsets_at`) and
ends at a bound (exclusive) or at the partition's end when reading began: the last stable offset
under read_committed (transaction markers stepped over, open transactions waited for), found
with ``enable.partition.eof``. The reader is assigned partitions, never joins a group and never
commits.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from bridge.errors import KafkaUnavailable, TopicError
from bridge.kafka.config import client_config
from bridge.settings import Settings

__all__ = ["BEGINNING", "Range", "TopicReader"]

#: The start of a range at a partition's first kept record.
BEGINNING = OFFSET_BEGINNING

#: (first offset, end): ``end`` exclusive, or ``None`` for the partition's end when reading began.
Range = tuple[int, int | None]


class TopicReader:
    """Reads ranges of ``topic``'s partitions; a context manager (closing the consumer).

    ``config`` is a :func:`~bridge.kafka.config.client_config` result; :meth:`of` builds one
    from the settings. ``isolation.level`` stays read_committed (librdkafka's default) unless the
    caller's config says otherwise.
    """

    def __init__(self, config: dict[str, Any], topic: str, timeout: float = 10.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._consumer = Consumer({
            "isolation.level": "read_committed",
            **config,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 50,
        })

    @classmethod
    def of(cls, settings: Settings, topic: str, purpose: str, timeout: float = 10.0) -> TopicReader:
        """A reader of ``topic`` configured from ``settings``; ``purpose`` names its (unused) group."""
        config = client_config(settings, **{"group.id": f"{purpose}-{uuid.uuid4().hex}"})
        return cls(config, topic, timeout)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    # --- planning a range ---------------------------------------------------------------------

    def partitions(self, missing_ok: bool = False) -> list[int]:
        """The topic's partition numbers; a missing topic has none, or (not ``missing_ok``) raises."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=self.timeout).topics[self.topic]
        except (KafkaException, KeyError) as exc:
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
        if metadata.error is not None and not metadata.partitions and not missing_ok:
            raise TopicError(f"{self.topic} is missing: run `event-bridge topics create`")
        return sorted(metadata.partitions)

    def watermarks(self, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """(low, high) offsets of each partition: its first kept record and its end."""
        try:
            return {p: self._consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                            timeout=self.timeout)
                    for p in partitions}
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc

    def offsets_at(self, at: float, partitions: list[int]) -> dict[int, int | None]:
        """The first offset at or after time ``at`` per partition; ``None``: nothing since then."""
        if not partitions:
            return {}
        try:
            found = self._consumer.offsets_for_times(
                [TopicPartition(self.topic, p, int(at * 1000)) for p in partitions], timeout=self.timeout)
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot read {self.topic}: {exc}") from exc
        # -1: no record at or after that time in this partition.
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in found}

    def first_timestamp(self, partition: int, offset: int, wait_s: float = 10.0) -> float | None:
        """The time (epoch seconds) of the first record at or after ``offset``; ``None`` if none came."""
        self._consumer.assign([TopicPartition(self.topic, partition, offset)])
        try:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                message = self._consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is None:
                    return float(message.timestamp()[1]) / 1000
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return None
            return None
        finally:
            self._consumer.unassign()

    # --- reading ------------------------------------------------------------------------------

    def read(self, ranges: Mapping[int, Range], timeout_s: float | None = None,
             idle_s: float | None = None, cancelled: Callable[[], bool] | None = None) -> Iterator[Any]:
        """The messages of ``ranges`` ({partition: (first offset, end)}), in order per partition.

        Partitions are read together. ``timeout_s``: past it, raise ``TimeoutError`` (a read that
        must be complete); ``idle_s``: stop quietly when nothing came for that long (a best-effort
        read); ``cancelled``: checked between polls, stops quietly. A consumer error other than a
        retriable one raises ``KafkaUnavailable``.
        """
        ends = {p: end for p, (first, end) in ranges.items() if end is None or end > first}
        if not ends:
            return
        consumer = self._consumer
        consumer.assign([TopicPartition(self.topic, p, ranges[p][0]) for p in sorted(ends)])
        pending = set(ends)
        started = last_message = time.monotonic()
        try:
            while pending:
                now = time.monotonic()
                if timeout_s is not None and now - started > timeout_s:
                    raise TimeoutError(f"reading {self.topic} {sorted(pending)} took over {timeout_s:.0f} s")
                if (idle_s is not None and now - last_message > idle_s) or (cancelled and cancelled()):
                    return
                for message in consumer.consume(1000, 0.5):
                    partition = message.partition()
                    if partition not in pending:
                        continue  # a partition already read to its bound: later records are not ours
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            pending.discard(partition)
                        elif not error.retriable():
                            raise KafkaUnavailable(f"reading {self.topic}: {error.str()}")
                        continue
                    last_message = time.monotonic()
                    end = ends[partition]
                    if end is not None and message.offset() >= end:
                        self._done(partition, pending)
                        continue
                    yield message
                    if end is not None and message.offset() + 1 >= end:
                        self._done(partition, pending)
        finally:
            # librdkafka keeps a partition's pause across assignments: the next read resumes it.
            consumer.resume([TopicPartition(self.topic, p) for p in ends])
            consumer.unassign()

    def _done(self, partition: int, pending: set[int]) -> None:
        pending.discard(partition)
        self._consumer.pause([TopicPartition(self.topic, partition)])
