"""A Faust agent updates a table; a restarted worker recovers the table from its changelog."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.settings import Settings, child_env

pytestmark = pytest.mark.integration
APP = Path(__file__).with_name("faust_counter_app.py")
ROOT = Path(__file__).resolve().parents[2]


def _worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = child_env(settings)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, str(APP)], env=env, cwd=ROOT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Output:
    """Reads the counter's output topic from the start."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(settings.librdkafka(**{
            "group.id": settings.app_id + "-reader", "auto.offset.reset": "earliest"}))
        self.consumer.subscribe([topic])
        self.latest: dict[str, int] = {}

    def wait_for(self, key: str, value: int, timeout: float = 90) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.latest.get(key) != value:
            msg = self.consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                self.latest[msg.key().decode()] = int(msg.value().decode())
        return self.latest.get(key, 0)


@pytest.fixture
def counter_topics(kafka_settings: Settings) -> Iterator[tuple[str, str]]:
    names = (kafka_settings.topic_prefix + "counter-in", kafka_settings.topic_prefix + "counter-out")
    admin = AdminClient(kafka_settings.librdkafka())
    for future in admin.create_topics([NewTopic(n, kafka_settings.partitions, 1) for n in names]).values():
        future.result(timeout=30)
    yield names


def _send(settings: Settings, topic: str, key: str, count: int) -> None:
    producer = Producer(settings.librdkafka(acks="all"))
    for i in range(count):
        producer.produce(topic, key=key.encode(), value=f"tick-{i}".encode())
    assert producer.flush(30) == 0


def test_table_recovered_after_restart(kafka_settings: Settings, counter_topics: tuple[str, str]) -> None:
    source, sink = counter_topics
    output = Output(kafka_settings, sink)
    worker = _worker(kafka_settings)
    try:
        _send(kafka_settings, source, "door-1", 10)
        assert output.wait_for("door-1", 10) == 10
    finally:
        _stop(worker)

    worker = _worker(kafka_settings)
    try:
        _send(kafka_settings, source, "door-1", 5)
        # 15, not 5: the second process rebuilt the table from its changelog before counting.
        assert output.wait_for("door-1", 15) == 15
    finally:
        _stop(worker)
        output.consumer.close()
