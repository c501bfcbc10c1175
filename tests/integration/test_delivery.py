"""Delivery against real HTTP servers on loopback and the real broker."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from bridge.delivery import signing
from bridge.events import DeliveryTask
from bridge.kafka.config import client_config
from bridge.settings import Settings
from tests.fixtures.cli import run_cli
from tests.fixtures.partner import FakePartner, closed_port
from tests.fixtures.stack import (
    ADMIN,
    Stack,
    outcomes,
    payload,
    read_topic,
    running_stack,
    stack_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(kafka_settings: Settings) -> Iterator[Stack]:
    with running_stack(stack_settings(kafka_settings, partitions=1)) as stack:
        yield stack


def test_success_is_the_platform_push_with_a_delivery_id(stack: Stack, fake_partner: FakePartner) -> None:
    stack.partner(fake_partner.url("/ok/a"))
    stack.worker()
    stack.push("e-1")
    [got] = fake_partner.wait_ok("/ok/a", 1)
    assert got.headers["Content-Type"] == "application/json"
    assert len(got.delivery_id) == 32
    sent = payload()
    sent["params"]["events"][0]["eventId"] = "e-1"
    assert got.json() == sent
    assert "webhook-signature" not in {k.lower() for k in got.headers}  # signing is off by default


def test_500_then_200_is_retried_and_delivered(stack: Stack, fake_partner: FakePartner) -> None:
    pid = stack.partner(fake_partner.url("/fail/2/b"))
    stack.worker()
    stack.push("e-2")
    got = fake_partner.wait_ok("/fail/2/b", 1)
    assert len(got) == 1
    attempts = fake_partner.all("/fail/2/b")
    assert [r.answered for r in attempts] == [500, 500, 200]
    assert len({r.delivery_id for r in attempts}) == 1
    records = outcomes(stack.settings, until=lambda rs: any(r["result"] == "delivered" for r in rs))
    mine = sorted((r for r in records if r["partner_id"] == pid), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["result"], r["status_code"]) for r in mine] == [
        (0, "retry", 500), (1, "retry", 500), (2, "delivered", 200)]
    assert mine[0]["next_retry_at"] is not None and mine[0]["error"] == "http_500"


def test_timeout_is_retried(stack: Stack, fake_partner: FakePartner) -> None:
    pid = stack.partner(fake_partner.url("/slow-once/3/c"), delivery={"timeoutS": 0.5})
    stack.worker()
    stack.push("e-3")
    assert len(fake_partner.wait_ok("/slow-once/3/c", 2)) >= 1
    records = outcomes(stack.settings, until=lambda rs: any(r["result"] == "delivered" for r in rs))
    mine = sorted((r for r in records if r["partner_id"] == pid), key=lambda r: r["attempt"])
    assert mine[0]["error"] == "timeout" and mine[-1]["result"] == "delivered"


def test_refused_connection_goes_to_dead_letters_after_last_attempt(stack: Stack) -> None:
    port = closed_port()
    pid = stack.partner(f"http://127.0.0.1:{port}/gone")
    stack.worker()
    stack.push("e-4")
    letters = read_topic(stack.settings, "deliveries.dlq", until=lambda rs: len(rs) >= 1)
    assert len(letters) == 1
    letter = letters[0]
    assert letter["task"]["partner_id"] == pid and letter["task"]["event_ids"] == ["e-4"]
    assert letter["attempts"] == 4  # the first try and the three retries of the schedule
    assert letter["last_error"] == "connect_error" and "gave up after 4 attempts" in letter["reason"]
    records = outcomes(stack.settings, until=lambda rs: len([r for r in rs if r["partner_id"] == pid]) >= 4)
    assert [r["result"] for r in records if r["partner_id"] == pid] == ["retry", "retry", "retry", "dead"]


def test_unresolvable_host_is_a_retriable_dns_failure(stack: Stack) -> None:
    pid = stack.partner("http://no-such-host.invalid/x")
    stack.worker()
    stack.push("e-5")
    records = outcomes(stack.settings, until=lambda rs: any(r["partner_id"] == pid for r in rs))
    first = next(r for r in records if r["partner_id"] == pid)
    assert first["error"] == "dns" and first["result"] == "retry"


def test_retry_after_is_honoured(stack: Stack, fake_partner: FakePartner) -> None:
    pid = stack.partner(fake_partner.url("/retry-after/2/d"))
    stack.worker()
    stack.push("e-6")
    attempts = fake_partner.wait_ok("/retry-after/2/d", 1)
    assert attempts
    records = outcomes(stack.settings, until=lambda rs: any(r["result"] == "delivered" for r in rs))
    first = next(r for r in records if r["partner_id"] == pid and r["attempt"] == 0)
    assert first["status_code"] == 429
    # The schedule says 0.5 s; the partner asked for 2 s, and got at least that.
    waited = (first["next_retry_at"] - first["attempted_at"]).total_seconds()
    assert waited >= 2.0
    tries = fake_partner.all("/retry-after/2/d")
    assert tries[1].at - tries[0].at >= 2.0


def test_410_is_dead_at_once_and_redrive_delivers_with_same_id(stack: Stack,
                                                              fake_partner: FakePartner) -> None:
    gone = stack.partner(fake_partner.url("/status/410/e"))
    toggled = stack.partner(fake_partner.url("/toggle/f"))
    stack.worker()
    stack.push("e-7")
    letters = read_topic(stack.settings, "deliveries.dlq", until=lambda rs: len(rs) >= 2)
    by_partner = {letter["task"]["partner_id"]: letter for letter in letters}
    assert by_partner[gone]["attempts"] == 1 and by_partner[gone]["last_status_code"] == 410
    assert by_partner[toggled]["attempts"] == 4

    fake_partner.heal("f")
    listed = run_cli(stack.settings, "dlq", "list", "--partner", toggled)
    assert listed.returncode == 0 and "e-7" in listed.stdout and "1 dead letters" in listed.stdout
    redriven = run_cli(stack.settings, "dlq", "redrive", "--partner", toggled)
    assert redriven.returncode == 0 and "re-enqueued 1 dead letters" in redriven.stdout
    [ok] = fake_partner.wait_ok("/toggle/f", 1)
    failed = [r for r in fake_partner.all("/toggle/f") if r.answered == 500]
    assert {r.delivery_id for r in failed} == {ok.delivery_id}
    assert ok.headers.get("X-Bridge-Replay") == "redrive"

    api = stack.http.get("/admin/v1/dlq", headers=ADMIN, params={"partner": gone}).json()
    assert api["count"] == 1 and api["deadLetters"][0]["task"]["partner_id"] == gone
    recent = stack.http.get(f"/admin/v1/partners/{toggled}/deliveries", headers=ADMIN).json()
    assert recent["outcomes"][0]["result"] == "delivered"


def test_dead_partner_does_not_hold_up_a_healthy_one(stack: Stack, fake_partner: FakePartner) -> None:
    # One partition: both partners' tasks share it. A answers after 10 s (its slots fill up),
    # B answers at once and must get everything while A's tasks are still outstanding.
    stack.partner(fake_partner.url("/slow/10/a"), delivery={"maxInFlight": 2, "timeoutS": 30})
    stack.partner(fake_partner.url("/ok/b"))
    stack.worker()
    for i in range(40):
        stack.push(f"iso-{i}")
    got = fake_partner.wait_ok("/ok/b", 40, timeout=60)
    assert {r.json()["params"]["events"][0]["eventId"] for r in got} == {f"iso-{i}" for i in range(40)}
    assert len(fake_partner.ok("/slow/10/a")) < 40


def test_signed_pushes_verify_with_the_partner_secret(stack: Stack, fake_partner: FakePartner) -> None:
    answer = stack.http.post("/admin/v1/partners", headers=ADMIN, json={
        "name": "signed", "userId": "u", "delivery": {"signing": True}}).json()
    from tests.fixtures.artemis import SUBSCRIBE, ArtemisClient

    client = ArtemisClient(stack.http, answer["appKey"], answer["appSecret"])
    client.post(SUBSCRIBE, {"eventTypes": [196883], "eventDest": fake_partner.url("/ok/signed")})
    stack.worker()
    stack.push("e-8")
    [got] = fake_partner.wait_ok("/ok/signed", 1)
    headers = {k.lower(): v for k, v in got.headers.items()}
    assert headers["webhook-id"] == got.delivery_id
    assert signing.verify(answer["appSecret"], headers, got.body)
    assert not signing.verify("another-secret", headers, got.body)


def test_breaker_state_visible(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=1, breaker_failures=2, breaker_cooldown_s=60,
                              retry_schedule=[0.2, 0.2, 0.2, 0.2])
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/status/500/brk"))
        stack.worker()
        for i in range(3):
            stack.push(f"brk-{i}")
        deadline = time.monotonic() + 60
        state: dict[str, object] = {}
        while time.monotonic() < deadline and not state:
            state = stack.http.get("/admin/v1/breakers", headers=ADMIN).json()["breakers"]
            time.sleep(0.5)
        [(dest, info)] = state.items()
        assert dest == f"http://127.0.0.1:{fake_partner.port}/status/500/brk" and info["state"] == "open"  # type: ignore[index]
        # Every attempt of the 3 tasks (1 + 4 retries each): tasks arrive together (routing
        # commits a batch at once), so stopping at the first breaker_open outcome raced the
        # outcomes of attempts still in flight.
        records = outcomes(settings, until=lambda rs: len(rs) >= 15)
        assert any(r["error"] == "breaker_open" and r["status_code"] is None for r in records)
        # While open, attempts do not reach the partner: far fewer requests than outcomes.
        assert len(fake_partner.all("/status/500/brk")) < len(records)


def _received_ids(fake: FakePartner, prefix: str) -> dict[str, set[str]]:
    by_event: dict[str, set[str]] = {}
    for r in fake.ok(prefix):
        for event in r.json()["params"]["events"]:  # a batched push carries several
            by_event.setdefault(event["eventId"], set()).add(r.delivery_id)
    return by_event


def _wait_all(fake: FakePartner, prefix: str, expected: set[str], timeout: float = 180) -> dict[str, set[str]]:
    """Wait until every expected event was received at least once (duplicates do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        by_event = _received_ids(fake, prefix)
        if expected <= set(by_event):
            return by_event
        time.sleep(0.2)
    return _received_ids(fake, prefix)


def test_worker_sigkill_mid_load_loses_nothing(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=3)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/ok/k1"))
        stack.partner(fake_partner.url("/slow/0.05/k2"))
        worker = stack.worker()
        for i in range(150):
            stack.push(f"k-{i}")
        fake_partner.wait_ok("/ok/k1", 30)
        worker.kill()  # SIGKILL mid-load
        for i in range(150, 200):
            stack.push(f"k-{i}")
        stack.worker()
        expected = {f"k-{i}" for i in range(200)}
        for prefix in ("/ok/k1", "/slow/0.05/k2"):
            by_event = _wait_all(fake_partner, prefix, expected)
            assert set(by_event) == expected
            assert all(len(ids) == 1 for ids in by_event.values())  # duplicates share the id
        # Routing is exactly-once: the killed worker's open transaction was aborted, so the
        # committed task log has each (partner, event) once, however far the worker had got.
        tasks = read_topic(settings, "deliveries", DeliveryTask.decode)
        routed = Counter((t.partner_id, t.event_ids) for t in tasks)
        assert len(routed) == 2 * len(expected)
        assert set(routed.values()) == {1}


def test_two_workers_one_stopped_mid_load(kafka_settings: Settings, fake_partner: FakePartner) -> None:
    settings = stack_settings(kafka_settings, partitions=4)
    with running_stack(settings) as stack:
        stack.partner(fake_partner.url("/slow/0.02/w"))
        first, _second = stack.worker(), stack.worker()
        for i in range(200):
            stack.push(f"w-{i}")
        fake_partner.wait_ok("/slow/0.02/w", 40)
        first.stop()
        for i in range(200, 260):
            stack.push(f"w-{i}")
        expected = {f"w-{i}" for i in range(260)}
        by_event = _wait_all(fake_partner, "/slow/0.02/w", expected)
        assert set(by_event) == expected
        assert all(len(ids) == 1 for ids in by_event.values())


def test_broker_restart_mid_load(broker: object, unique: object, fake_partner: FakePartner) -> None:
    from bridge.ops.localkafka import LocalKafka

    local = LocalKafka(Settings().cache_dir, 29692)
    local.start()
    base = Settings(kafka_bootstrap=local.bootstrap, topic_prefix=f"{unique('rst')}.",  # type: ignore[operator]
                    app_id=unique("rst-app"), partitions=2)  # type: ignore[operator]
    settings = stack_settings(base)
    try:
        with running_stack(settings) as stack:
            stack.partner(fake_partner.url("/ok/r"))
            stack.worker()
            for i in range(60):
                stack.push(f"r-{i}")
            fake_partner.wait_ok("/ok/r", 10)
            local.stop()
            time.sleep(2)
            local.start()
            for i in range(60, 100):
                _push_retrying(stack.http, f"r-{i}")
            expected = {f"r-{i}" for i in range(100)}
            by_event = _wait_all(fake_partner, "/ok/r", expected)
            assert set(by_event) == expected
            assert all(len(ids) == 1 for ids in by_event.values())
    finally:
        local.stop()


def _push_retrying(http: TestClient, event_id: str) -> None:
    # Right after a broker restart the API's producer may still be reconnecting: the platform
    # would retry a 503, so does this.
    body = payload()
    body["params"]["events"][0]["eventId"] = event_id
    for _ in range(20):
        answer = http.post("/eventRcv", content=json.dumps(body), headers={"Content-Type": "application/json"})
        if answer.status_code == 200:
            return
        time.sleep(1)
    raise AssertionError(f"ingest never recovered: {answer.status_code} {answer.text}")


@pytest.mark.parametrize(("window_s", "pushed_again"), [(600.0, 0), (0.0, 20)])
def test_redone_partition_does_not_push_what_was_delivered(kafka_settings: Settings, fake_partner: FakePartner,
                                                           window_s: float, pushed_again: int) -> None:
    """A worker that redoes a partition (its predecessor died before committing) skips the
    delivery ids it finds delivered in bridge.outcomes (BRIDGE_REDELIVERY_WINDOW_S; 0 turns
    that off, and then everything is pushed again); a replay still re-delivers on purpose."""
    with running_stack(stack_settings(kafka_settings, partitions=1, redelivery_window_s=window_s)) as stack:
        _redo_partition(stack, fake_partner, pushed_again)


def _redo_partition(stack: Stack, fake_partner: FakePartner, pushed_again: int) -> None:
    pid = stack.partner(fake_partner.url("/ok/redo"))
    worker = stack.worker()
    for i in range(20):
        stack.push(f"redo-{i}")
    fake_partner.wait_ok("/ok/redo", 20)
    worker.stop()
    # What a crash before the offset commit leaves: the group's offsets back at the start.
    settings = stack.settings
    topic = settings.topic_prefix + "deliveries"
    group = Consumer(client_config(settings, **{"group.id": f"{settings.app_id}-delivery"}))
    group.commit(offsets=[TopicPartition(topic, p, 0) for p in range(settings.partitions)],
                 asynchronous=False)
    ends = [group.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in range(settings.partitions)]
    reset = group.committed([TopicPartition(topic, p) for p in range(settings.partitions)], timeout=10)
    group.close()
    assert [tp.offset for tp in reset] == [0] * settings.partitions and all(e > 20 for e in ends)
    stack.worker()
    # Wait until the new worker has read the whole partition again and committed past it.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        probe = Consumer(client_config(settings, **{"group.id": f"{settings.app_id}-delivery"}))
        committed = probe.committed([TopicPartition(topic, p) for p in range(settings.partitions)], timeout=10)
        probe.close()
        # end - 1: the log's last offset is routing's transaction marker, which no consumer reads.
        if all(tp.offset >= end - 1 for tp, end in zip(committed, ends)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the new worker did not get through the partition")
    assert len(fake_partner.ok("/ok/redo")) == 20 + pushed_again
    replay = stack.http.post("/admin/v1/replays", headers=ADMIN,
                             json={"partnerId": pid, "fromTime": "2020-01-01T00:00:00Z"})
    assert replay.status_code == 202, replay.text
    # A replay is asked for: it re-delivers whatever was delivered.
    assert len(fake_partner.wait_ok("/ok/redo", 40 + pushed_again)) == 40 + pushed_again


@pytest.mark.parametrize("max_batch", [10, 1])
def test_batching_partner_gets_every_event_once(stack: Stack, fake_partner: FakePartner,
                                                max_batch: int) -> None:
    # One push in flight and a slow answer, so that tasks wait for the slot: with maxBatch 10
    # what waits goes together; with 1, each event is a push of its own, as before batching.
    prefix = f"/slow/0.3/batch{max_batch}"
    pid = stack.partner(fake_partner.url(prefix), delivery={"maxBatch": max_batch, "maxInFlight": 1})
    stack.worker()
    expected = {f"b{max_batch}-{i}" for i in range(30)}
    for event_id in sorted(expected):
        stack.push(event_id)
    by_event = _wait_all(fake_partner, prefix, expected, timeout=120)
    assert set(by_event) == expected
    pushes = fake_partner.ok(prefix)
    events = [e["eventId"] for r in pushes for e in r.json()["params"]["events"]]
    assert sorted(events) == sorted(expected)  # every event exactly once
    assert all(len(r.json()["params"]["events"]) <= max_batch for r in pushes)
    assert len({r.delivery_id for r in pushes}) == len(pushes)  # one delivery id per push
    if max_batch == 1:
        assert len(pushes) == len(expected)
    else:
        assert len(pushes) < len(expected)
    records = outcomes(stack.settings, until=lambda rs: sum(
        len(r["event_ids"]) for r in rs if r["partner_id"] == pid and r["result"] == "delivered") >= len(expected))
    mine = [r for r in records if r["partner_id"] == pid and r["result"] == "delivered"]
    # One outcome per push, under the push's delivery id, listing the push's event ids.
    assert {r["delivery_id"] for r in mine} == {r.delivery_id for r in pushes}
    listed = {r["delivery_id"]: r["event_ids"] for r in mine}
    for push in pushes:
        assert listed[push.delivery_id] == [e["eventId"] for e in push.json()["params"]["events"]]
