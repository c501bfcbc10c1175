"""`event-bridge kafka start | status | stop`, and start after SIGKILL on the same data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge.ops.localkafka import LocalKafka
from bridge.settings import Settings, child_env

pytestmark = pytest.mark.integration
PORT = 29392  # its own broker, next to the suite's one


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = child_env(Settings(kafka_port=PORT))
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True,
                          env=env, timeout=180)


@pytest.fixture
def fresh_broker(broker: object) -> Iterator[LocalKafka]:
    # Depends on the session broker so that the classpath is already fetched into the cache.
    local = LocalKafka(Settings().cache_dir, PORT)
    local.stop()
    shutil.rmtree(local.home, ignore_errors=True)
    yield local
    local.stop()
    shutil.rmtree(local.home, ignore_errors=True)


def test_lifecycle_and_recovery_after_sigkill(fresh_broker: LocalKafka) -> None:
    started = cli("kafka", "start")
    assert started.returncode == 0, started.stderr
    assert "started" in started.stdout

    again = cli("kafka", "start")
    assert again.returncode == 0 and "already running" in again.stdout

    status = cli("kafka", "status")
    assert status.returncode == 0
    assert fresh_broker.version in status.stdout and f"127.0.0.1:{PORT}" in status.stdout
    assert "ready    yes" in status.stdout

    # Write a record, SIGKILL the broker, start again: same data, same record.
    admin = AdminClient({"bootstrap.servers": fresh_broker.bootstrap})
    admin.create_topics([NewTopic("survivor", 1, 1)])["survivor"].result(timeout=30)
    producer = Producer({"bootstrap.servers": fresh_broker.bootstrap, "acks": "all"})
    producer.produce("survivor", value=b"still here")
    assert producer.flush(30) == 0

    pid = json.loads(fresh_broker.state_file.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not fresh_broker.status().running:
            break
        time.sleep(0.1)
    down = cli("kafka", "status")
    assert down.returncode == 1 and "running  no" in down.stdout

    restarted = cli("kafka", "start")
    assert restarted.returncode == 0, restarted.stderr
    consumer = Consumer({"bootstrap.servers": fresh_broker.bootstrap, "group.id": "survivor-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["survivor"])
    value = None
    for _ in range(150):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            value = msg.value()
            break
    consumer.close()
    assert value == b"still here"

    stopped = cli("kafka", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not fresh_broker.status().running
    assert "no broker running" in cli("kafka", "stop").stdout


def test_port_taken_is_a_clear_error(fresh_broker: LocalKafka) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", PORT))
        squatter.listen()
        result = cli("kafka", "start")
    assert result.returncode == 1
    assert f"port {PORT}" in result.stderr and "taken" in result.stderr


def test_missing_java_is_a_clear_error(fresh_broker: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    from bridge.errors import LocalKafkaError

    with pytest.raises(LocalKafkaError, match="java not found"):
        fresh_broker.start()


def test_missing_maven_is_a_clear_error(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from bridge.errors import LocalKafkaError

    bindir = Path(str(tmp_path)) / "bin"
    bindir.mkdir()
    java = shutil.which("java")
    assert java
    (bindir / "java").symlink_to(java)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(LocalKafkaError, match="mvn not found.*install Apache Maven"):
        LocalKafka(Path(str(tmp_path)) / "cache", PORT).fetch()
