"""The delivery consumer's bookkeeping (bridge.delivery.consumer) over a stand-in Kafka client.

The stand-in replaces only confluent-kafka's ``Consumer`` (through ``make_consumer``): it hands
out the messages a test queues and records commits, pauses and resumes. What it checks is the
consumer's own logic: decoding, commits only up to the lowest unsettled task, revocation, flow
control. Against the real broker: tests/integration/test_delivery.py and test_worker.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from bridge.delivery import consumer as consumer_module
from bridge.delivery.consumer import DeliveryConsumer
from bridge.delivery.delivered import DeliveredIds
from bridge.delivery.source import TaskRef, Undecodable
from bridge.settings import Settings
from tests.fixtures.tasks import make_task

SETTINGS = Settings(redelivery_window_s=0.0, retry_schedule=[5.0, 30.0])
TOPIC = "bridge.deliveries"


class _Message:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes,
                 error: KafkaError | None = None) -> None:
        self._topic, self._partition, self._offset, self._value, self._error = (
            topic, partition, offset, value, error)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def error(self) -> KafkaError | None:
        return self._error


class _Client:
    """Stands in for confluent_kafka.Consumer."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.queued: list[_Message] = []
        self.commits: list[list[tuple[str, int, int]]] = []
        self.paused: list[tuple[str, int]] = []
        self.callbacks: dict[str, Any] = {}
        self.topics: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.topics = topics
        self.callbacks = callbacks

    def consume(self, n: int, timeout: float) -> list[_Message]:
        batch, self.queued = self.queued[:n], self.queued[n:]
        return batch

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.paused += [(tp.topic, tp.partition) for tp in partitions]

    def resume(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.paused.remove((tp.topic, tp.partition))

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return (0, -1)

    def close(self) -> None:
        self.closed = True

    # what the broker does
    def assign(self, *partitions: tuple[str, int]) -> None:
        self.callbacks["on_assign"](self, [TopicPartition(t, p) for t, p in partitions])

    def revoke(self, *partitions: tuple[str, int]) -> None:
        self.callbacks["on_revoke"](self, [TopicPartition(t, p) for t, p in partitions])


@pytest.fixture
async def opened() -> Any:
    clients: list[_Client] = []

    def make(config: dict[str, Any]) -> _Client:
        clients.append(_Client(config))
        return clients[-1]

    source = DeliveryConsumer(SETTINGS, DeliveredIds(0.0), make_consumer=make)  # type: ignore[arg-type]
    await source.open()
    yield source, clients[0]
    await source.close()


def _tasks(client: _Client, partition: int, count: int, start: int = 0) -> None:
    for offset in range(start, start + count):
        client.queued.append(_Message(TOPIC, partition, offset, make_task(delivery_id=f"d{offset}").encode()))


async def test_subscribes_to_the_task_topics_without_auto_commit(opened: Any) -> None:
    source, client = opened
    assert client.topics == ["bridge.deliveries", "bridge.deliveries.retry.1", "bridge.deliveries.retry.2"]
    assert client.config["enable.auto.commit"] is False
    assert client.config["group.id"] == "event-bridge-delivery"


async def test_poll_decodes_tasks_and_flags_undecodable_records(opened: Any) -> None:
    source, client = opened
    client.assign((TOPIC, 0))
    _tasks(client, 0, 2)
    client.queued.append(_Message(TOPIC, 0, 2, b"{not json"))
    client.queued.append(_Message(TOPIC, 0, 3, b"", KafkaError(KafkaError._PARTITION_EOF)))
    polled = await source.poll()
    assert [ref for ref, _ in polled.tasks] == [TaskRef(TOPIC, 0, 0), TaskRef(TOPIC, 0, 1), TaskRef(TOPIC, 0, 2)]
    assert [item.delivery_id for _, item in polled.tasks[:2]] == ["d0", "d1"]
    assert isinstance(polled.tasks[2][1], Undecodable)


async def test_commits_only_up_to_the_lowest_unsettled_task(opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    source, client = opened
    monkeypatch.setattr(consumer_module, "COMMIT_EVERY_S", 0.0)  # commit on every poll
    client.assign((TOPIC, 0))
    _tasks(client, 0, 4)
    await source.poll()
    for offset in (0, 2, 3):
        source.settled(TaskRef(TOPIC, 0, offset))
    await source.poll()
    assert client.commits[-1] == [(TOPIC, 0, 1)]  # offset 1 is unsettled
    source.settled(TaskRef(TOPIC, 0, 1))
    await source.poll()
    assert client.commits[-1] == [(TOPIC, 0, 4)]
    commits = len(client.commits)
    await source.poll()
    assert len(client.commits) == commits  # nothing new settled: no commit


async def test_revocation_commits_what_is_settled_and_is_reported_once(opened: Any) -> None:
    source, client = opened
    client.assign((TOPIC, 0), (TOPIC, 1))
    _tasks(client, 0, 2)
    await source.poll()
    source.settled(TaskRef(TOPIC, 0, 0))
    client.revoke((TOPIC, 0))
    assert client.commits[-1] == [(TOPIC, 0, 1)]
    assert (await source.poll()).revoked == [(TOPIC, 0)]
    assert (await source.poll()).revoked == []
    source.settled(TaskRef(TOPIC, 0, 1))  # settled after the revocation: ignored
    _tasks(client, 0, 1, start=2)  # fetched before the revocation: not handed out
    assert (await source.poll()).tasks == []


async def test_a_partition_with_too_many_unsettled_tasks_is_paused_then_resumed(
        opened: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    source, client = opened
    monkeypatch.setattr(consumer_module, "MAX_UNSETTLED", 4)
    monkeypatch.setattr(consumer_module, "COMMIT_EVERY_S", 0.0)
    client.assign((TOPIC, 0))
    _tasks(client, 0, 5)
    await source.poll()
    await source.poll()
    assert client.paused == [(TOPIC, 0)]
    for offset in range(4):
        source.settled(TaskRef(TOPIC, 0, offset))
    await source.poll()
    assert client.paused == []


async def test_close_commits_and_leaves(opened: Any) -> None:
    source, client = opened
    client.assign((TOPIC, 0))
    _tasks(client, 0, 1)
    await source.poll()
    source.settled(TaskRef(TOPIC, 0, 0))
    await source.close()
    assert client.commits[-1] == [(TOPIC, 0, 1)] and client.closed
