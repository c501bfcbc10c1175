"""The worker process (``event-bridge worker``): signals and drain, a dead stage, shared resources, --stages."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from bridge.cli import app
from bridge.events import DeliveryTask
from bridge.kafka.config import client_config
from bridge.kafka.reader import BEGINNING, TopicReader
from bridge.settings import Settings
from tests.fixtures.partner import FakePartner
from tests.fixtures.polling import eventually
from tests.fixtures.stack import Stack, Worker, read_topic, running_stack, stack_settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _received(fake: FakePartner, prefix: str) -> Counter[str]:
    """How many 2xx pushes of each eventId the partner answered."""
    return Counter(r.json()["params"]["events"][0]["eventId"] for r in fake.received
                   if r.path.startswith(prefix) and 200 <= r.answered < 300)


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> None:
    eventually(check, what, timeout)


def _exit_code(worker: Worker, timeout: float = 90.0) -> int:
    assert worker.proc is not None
    return worker.proc.wait(timeout=timeout)


def _all_settled(settings: Settings) -> bool:
    """The delivery group's committed offsets are past the last task of bridge.deliveries.

    (Not the high watermark: routing writes the topic in transactions, and the commit marker
    after a partition's last task is never consumed, so it is never committed past.)
    """
    topic = settings.topic_prefix + "deliveries"
    partitions = range(settings.partitions)
    ends = {p: -1001 for p in partitions}  # -1001: nothing committed (a partition without tasks)
    with TopicReader.of(settings, topic, "read") as reader:
        for message in reader.read({p: (BEGINNING, None) for p in partitions}, timeout_s=30):
            ends[message.partition()] = message.offset() + 1
    group = Consumer(client_config(settings, **{"group.id": f"{settings.app_id}-delivery"}))
    try:
        committed = group.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    finally:
        group.close()
    return {tp.partition: tp.offset for tp in committed} == ends


@pytest.fixture
def stack(kafka_settings: Settings) -> Iterator[Stack]:
    # No redelivery check: a push is not repeated only because its offset was committed.
    with running_stack(stack_settings(kafka_settings, partitions=3, redelivery_window_s=0.0)) as stack:
        yield stack


def test_sigterm_under_load_loses_nothing_and_repeats_nothing_settled(stack: Stack,
                                                                      fake_partner: FakePartner) -> None:
    # The redelivery check is off: only the drain's settle-and-commit keeps pushes from repeating.
    _sigterm_under_load(stack, fake_partner, {"/ok/term-a": {}, "/slow/0.05/term-b": {}})


def test_sigterm_with_an_ordered_partner(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    # An ordered partner's queued tasks are left unsettled on stop (one at a time, in order), and
    # the tasks above them in their partition are redone by the next worker: the redelivery check
    # (on by default) is what keeps the settled ones among them from being pushed again.
    with running_stack(stack_settings(kafka_settings, partitions=3)) as stack:
        _sigterm_under_load(stack, fake_partner, {"/ok/ord-a": {}, "/ok/ord-b": {"ordered": True}})


def _sigterm_under_load(stack: Stack, fake_partner: FakePartner, partners: dict[str, dict[str, object]]) -> None:
    for path, delivery in partners.items():
        stack.partner(fake_partner.url(path), delivery=delivery)
    first = stack.worker()
    for i in range(150):
        stack.push(f"t-{i}")
    fake_partner.wait_ok(list(partners)[-1], 20)  # pushes are in flight now
    assert first.proc is not None
    first.proc.send_signal(signal.SIGTERM)
    for i in range(150, 200):  # the platform keeps pushing while the worker drains
        stack.push(f"t-{i}")
    assert _exit_code(first) == 0
    before = {prefix: _received(fake_partner, prefix) for prefix in partners}
    stack.worker()
    expected = {f"t-{i}" for i in range(200)}
    for prefix in partners:
        _wait_for(f"every event at {prefix}", lambda p=prefix: set(_received(fake_partner, p)) == expected)
    # Every task settled (its pushes done): what the partner counts now is final.
    _wait_for("every task settled", lambda: _all_settled(stack.settings))
    for prefix in partners:
        received = _received(fake_partner, prefix)
        assert set(received) == expected
        # What the stopped worker had pushed, the next worker pushed none of again.
        assert before[prefix] and all(received[e] == 1 for e in before[prefix]), prefix
    tasks = read_topic(stack.settings, "deliveries", DeliveryTask.decode)
    routed = Counter((t.partner_id, t.event_ids) for t in tasks if t.trigger == "live")
    assert len(routed) == len(partners) * len(expected) and set(routed.values()) == {1}


def test_a_stage_that_dies_stops_the_worker_with_exit_code_1(stack: Stack, tmp_path: Path) -> None:
    # A correlation state the routing stage cannot read back (not JSON): restoring its
    # partition raises, and the stage dies rather than route without the state.
    changelog = stack.settings.topic_prefix + "correlation"
    producer = Producer(client_config(stack.settings))
    producer.produce(changelog, key=b"broken", value=b"not json", partition=0)
    assert producer.flush(10) == 0
    log = tmp_path / "worker.log"
    worker = Worker(stack.settings, log=log).start()
    assert _exit_code(worker) == 1
    text = log.read_text()
    assert "stage routing died: JSONDecodeError" in text, text[-3000:]
    assert "worker stopped (exit code 1)" in text


def test_one_registry_view_is_shared_by_the_stages(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    port = _free_port()
    settings = stack_settings(kafka_settings, partitions=1, worker_metrics_port=port)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/ok/view"))
        stack.worker()
        stack.push("v-1")
        fake_partner.wait_ok("/ok/view", 1)  # routing and delivery both read the view by now
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    views = [line for line in metrics.splitlines() if line.startswith("bridge_registry_views ")]
    assert views == ["bridge_registry_views 1.0"]
    # The same endpoint times each phase of routing's transaction, the event's path to delivery.
    for phase in ("produce", "offsets", "commit"):
        [count] = [line for line in metrics.splitlines() if line.startswith(
            f'bridge_stage_transaction_seconds_count{{phase="{phase}",stage="route"}} ')]
        assert float(count.split()[-1]) >= 1, count


def _members(settings: Settings, stage: str) -> int:
    admin = AdminClient(client_config(settings))
    group = f"{settings.app_id}-{stage}"
    [description] = admin.describe_consumer_groups([group]).values()
    return len(description.result(timeout=10).members)


def test_stages_subset(stack: Stack, fake_partner: FakePartner, tmp_path: Path) -> None:
    stack.partner(fake_partner.url("/ok/subset"))
    logs = {name: tmp_path / f"{name}.log" for name in ("routing", "delivery")}
    for name, log in logs.items():
        stack.workers.append(Worker(stack.settings, args=["-l", "info", "--stages", name], log=log).start())
    stack.push("s-1")
    fake_partner.wait_ok("/ok/subset", 1)  # a routing-only and a delivery-only worker: one pipeline
    for name, log in logs.items():
        assert f"worker started: stages {name} " in log.read_text()
    # Each worker joined only its stage's consumer group; nobody runs analytics.
    _wait_for("one member per stage", lambda: (_members(stack.settings, "route"),
                                               _members(stack.settings, "delivery")) == (1, 1))
    assert _members(stack.settings, "analytics") == 0


def test_unknown_stage_is_refused() -> None:
    result = CliRunner().invoke(app, ["worker", "--stages", "routing,bogus"])
    assert result.exit_code == 1
    assert "unknown stage bogus" in result.output and "routing, analytics, delivery" in result.output
