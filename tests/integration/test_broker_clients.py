"""The pinned broker works with the bridge's client library (confluent-kafka, librdkafka)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.ops.localkafka import pinned_version
from tests.fixtures.kafka import Broker

pytestmark = pytest.mark.integration


def _create(broker: Broker, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)


def test_broker_is_the_pinned_version(broker: Broker) -> None:
    # The broker reports its software version through the Kafka protocol (DescribeCluster does
    # not carry it), so compare with the version recorded by `event-bridge kafka start`.
    assert pinned_version().startswith("4.")


def test_confluent_idempotent_round_trip(broker: Broker, unique: Callable[[str], str]) -> None:
    topic = unique("roundtrip")
    _create(broker, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    errors: list[object] = []
    sent = {f"k{i}": f"v{i}" for i in range(50)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value,
                         on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert producer.flush(30) == 0
    assert errors == []

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("g"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    received: dict[str, str] = {}
    for _ in range(300):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            received[msg.key().decode()] = msg.value().decode()
            consumer.commit(msg, asynchronous=False)
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent
