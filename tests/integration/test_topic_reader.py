"""The one topic-range reader (bridge.kafka.reader) against the real broker: by offsets or time,
to the end or a bound, read_committed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.errors import TopicError
from bridge.kafka.reader import BEGINNING, TopicReader
from bridge.settings import Settings
from tests.fixtures.kafka import Broker

pytestmark = pytest.mark.integration


def _topic(broker: Broker, name: str, partitions: int = 2) -> str:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
    return name


def _produce(broker: Broker, topic: str, records: list[tuple[int, str, int]]) -> None:
    """(partition, value, timestamp ms) each."""
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    for partition, value, ts in records:
        producer.produce(topic, value=value.encode(), partition=partition, timestamp=ts)
    assert producer.flush(30) == 0


def _values(messages: object) -> list[tuple[int, str]]:
    return sorted((m.partition(), m.value().decode()) for m in messages)  # type: ignore[attr-defined]


@pytest.fixture
def settings(broker: Broker) -> Settings:
    return Settings(kafka_bootstrap=broker.bootstrap, mode="dev")


def test_from_the_beginning_to_the_end(broker: Broker, settings: Settings,
                                       unique: Callable[[str], str]) -> None:
    topic = _topic(broker, unique("reader-all"))
    _produce(broker, topic, [(0, "a", 1000), (0, "b", 2000), (1, "c", 3000)])
    with TopicReader.of(settings, topic, "test") as reader:
        assert reader.partitions() == [0, 1]
        assert reader.watermarks([0, 1]) == {0: (0, 2), 1: (0, 1)}
        got = _values(reader.read({0: (BEGINNING, None), 1: (BEGINNING, None)}, timeout_s=60))
    assert got == [(0, "a"), (0, "b"), (1, "c")]


def test_by_offsets_to_a_bound(broker: Broker, settings: Settings, unique: Callable[[str], str]) -> None:
    topic = _topic(broker, unique("reader-bound"), partitions=1)
    _produce(broker, topic, [(0, f"v{i}", 1000 + i) for i in range(10)])
    with TopicReader.of(settings, topic, "test") as reader:
        got = [m.value().decode() for m in reader.read({0: (3, 6)}, timeout_s=60)]
        # The same reader reads a second range after the first (replay and export do).
        again = [m.value().decode() for m in reader.read({0: (8, None)}, timeout_s=60)]
        empty = list(reader.read({0: (5, 5)}, timeout_s=60))
    assert got == ["v3", "v4", "v5"]
    assert again == ["v8", "v9"]
    assert empty == []


def test_by_time(broker: Broker, settings: Settings, unique: Callable[[str], str]) -> None:
    topic = _topic(broker, unique("reader-time"))
    base = 1_700_000_000_000
    _produce(broker, topic, [(0, "old", base), (0, "new", base + 60_000), (1, "old1", base)])
    with TopicReader.of(settings, topic, "test") as reader:
        starts = reader.offsets_at((base + 30_000) / 1000, [0, 1])
        assert starts == {0: 1, 1: None}  # partition 1 has nothing since then
        ranges = {p: (first, None) for p, first in starts.items() if first is not None}
        assert _values(reader.read(ranges, timeout_s=60)) == [(0, "new")]
        assert reader.first_timestamp(0, 0) == base / 1000


def test_read_committed_skips_aborted_and_steps_over_markers(broker: Broker, settings: Settings,
                                                            unique: Callable[[str], str]) -> None:
    topic = _topic(broker, unique("reader-tx"), partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": unique("tx")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted", partition=0)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed", partition=0)
    producer.commit_transaction(30)
    with TopicReader.of(settings, topic, "test") as reader:
        # The log ends with a commit marker: the read still ends (at the last stable offset).
        got = [m.value() for m in reader.read({0: (BEGINNING, None)}, timeout_s=60)]
    assert got == [b"committed"]


def test_a_missing_topic(settings: Settings, unique: Callable[[str], str]) -> None:
    with TopicReader.of(settings, unique("reader-missing"), "test") as reader:
        assert reader.partitions(missing_ok=True) == []
        with pytest.raises(TopicError, match="is missing"):
            reader.partitions()


def test_cancelled_stops_quietly(broker: Broker, settings: Settings, unique: Callable[[str], str]) -> None:
    topic = _topic(broker, unique("reader-cancel"), partitions=1)
    _produce(broker, topic, [(0, f"v{i}", 1000 + i) for i in range(5)])
    with TopicReader.of(settings, topic, "test") as reader:
        assert list(reader.read({0: (BEGINNING, None)}, cancelled=lambda: True)) == []
