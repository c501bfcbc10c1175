"""Dead-letter redrive against the real broker, a real worker and real receivers on loopback.

The operator's story: a partner's endpoint breaks, its event is dead-lettered, the partner moves
its receiver to a new URL, the operator redrives: the event reaches the new URL once, the letter
is settled, and a second redrive sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.events import DeliveryTask
from bridge.settings import Settings
from tests.fixtures.artemis import onboard
from tests.fixtures.cli import run_cli
from tests.fixtures.partner import FakePartner
from tests.fixtures.polling import eventually as _eventually
from tests.fixtures.stack import (
    ADMIN,
    SUBSCRIBE,
    ArtemisClient,
    Stack,
    read_topic,
    running_stack,
    stack_settings,
)


pytestmark = pytest.mark.integration

UNSUBSCRIBE = SUBSCRIBE.replace("eventSubscriptionByEventTypes", "eventUnSubscriptionByEventTypes")
ACS = 196883


def eventually(check: Callable[[], Any], what: str) -> Any:
    return _eventually(check, what, timeout=30)


@pytest.fixture
def stack(kafka_settings: Settings) -> Iterator[Stack]:
    with running_stack(stack_settings(kafka_settings, partitions=1)) as stack:
        yield stack


def new_partner(stack: Stack, dest: str) -> tuple[str, ArtemisClient]:
    """A partner subscribed to the ACS type at ``dest``, and its signed Artemis client."""
    client = onboard(stack.http, dest, [ACS])
    return client.partner_id, client


def subscribe(client: ArtemisClient, dest: str) -> None:
    result = client.post(SUBSCRIBE, {"eventTypes": [ACS], "eventDest": dest})
    assert result.json()["code"] == "0", result.text



def partner_view(stack: Stack, pid: str) -> dict[str, Any]:
    answer = stack.http.get(f"/admin/v1/partners/{pid}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def dests(stack: Stack, pid: str) -> list[str]:
    return [d["eventDest"] for d in partner_view(stack, pid)["subscriptions"]["detail"]]


def letters(stack: Stack, pid: str, **params: Any) -> list[dict[str, Any]]:
    answer = stack.http.get("/admin/v1/dlq", headers=ADMIN, params={"partner": pid, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["deadLetters"])


def redrive(stack: Stack, **body: Any) -> dict[str, Any]:
    answer = stack.http.post("/admin/v1/dlq/redrive", headers=ADMIN, json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def cli(stack: Stack, *args: str) -> str:
    done = run_cli(stack.settings, "dlq", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def redriven_tasks(stack: Stack) -> list[DeliveryTask]:
    """Every redrive task on bridge.deliveries (what redrives enqueued, whatever was delivered)."""
    tasks = read_topic(stack.settings, "deliveries", DeliveryTask.decode)
    return [t for t in tasks if t.trigger == "redrive"]


def test_redrive_follows_the_partner_to_its_new_endpoint_and_settles(
        stack: Stack, fake_partner: FakePartner) -> None:
    old, new = "/status/410/g-old", "/ok/g-new"
    pid, client = new_partner(stack, fake_partner.url(old))
    stack.worker()
    stack.push("e-moved")
    [letter] = eventually(lambda: letters(stack, pid), "the 410 dead-lettered")
    assert letter["state"] == {"state": "dead"} and letter["redriveOf"] is None
    [dead_at_old] = fake_partner.all(old)
    assert dead_at_old.delivery_id == letter["task"]["delivery_id"]

    # The partner moves its receiver: same type, a new eventDest.
    subscribe(client, fake_partner.url(new))
    eventually(lambda: dests(stack, pid) == [fake_partner.url(new)], "the new subscription")

    first = redrive(stack, partner=pid)
    assert first["counts"] == {"sent": 1, "duplicate": 0, "skipped": 0} and first["redriven"] == 1
    assert first["letters"] == [{"id": letter["id"], "partner": pid, "outcome": "sent",
                                 "deliveryId": letter["task"]["delivery_id"],
                                 "destination": fake_partner.url(new)}]
    [got] = fake_partner.wait_ok(new, 1)
    assert got.delivery_id == letter["task"]["delivery_id"]  # the id the partner saw at the old URL
    assert got.headers.get("X-Bridge-Replay") == "redrive"
    assert got.json()["params"]["events"][0]["eventId"] == "e-moved"
    assert len(fake_partner.all(old)) == 1  # the old URL was not tried again

    # Settled: listed as redriven, and a second redrive sends nothing.
    [settled] = letters(stack, pid, state="redriven")
    assert settled["id"] == letter["id"]
    assert settled["state"]["outcome"] == "sent" and settled["state"]["times"] == 1
    assert settled["state"]["destination"] == fake_partner.url(new)
    assert letters(stack, pid, state="dead") == []
    second = redrive(stack, partner=pid)
    assert second["total"] == 0 and second["counts"] == {"sent": 0, "duplicate": 0, "skipped": 0}
    assert len(redriven_tasks(stack)) == 1  # nothing more was enqueued
    listed = cli(stack, "list", "--partner", pid)
    assert letter["id"] in listed and "redriven" in listed and "(sent)" in listed
    assert "1 dead letters (0 dead, 1 redriven)" in listed

    # Asked to, the settled letter goes again, with the same id.
    again = cli(stack, "redrive", "--partner", pid, "--include-redriven")
    assert "re-enqueued 1 dead letters" in again
    received = fake_partner.wait_ok(new, 2)
    assert len(received) == 2 and {r.delivery_id for r in received} == {letter["task"]["delivery_id"]}
    [settled] = letters(stack, pid, state="redriven")
    assert settled["state"]["times"] == 2

    # To the stored destination: the old URL, which still answers 410, so the task dies again
    # and its new letter points at the first.
    stored = cli(stack, "redrive", "--partner", pid, "--include-redriven", "--to-stored-destination")
    assert "re-enqueued 1 dead letters (to the URL each died at)" in stored
    eventually(lambda: len(fake_partner.all(old)) == 2, "the push to the stored URL")
    assert fake_partner.all(old)[1].delivery_id == letter["task"]["delivery_id"]
    [second_letter] = eventually(lambda: [x for x in letters(stack, pid) if x["id"] != letter["id"]],
                                 "the redrive's own dead letter")
    assert second_letter["redriveOf"] == letter["id"] and second_letter["state"] == {"state": "dead"}
    assert second_letter["task"]["trigger"] == "redrive"
    [first_letter] = [x for x in letters(stack, pid) if x["id"] == letter["id"]]
    assert first_letter["diedAgainAs"] == [second_letter["id"]]
    assert len(fake_partner.all(new)) == 2

    # A plain redrive now takes only the letter that is still dead, to the current endpoint.
    last = redrive(stack, partner=pid)
    assert last["counts"]["sent"] == 1 and [x["id"] for x in last["letters"]] == [second_letter["id"]]
    assert len(fake_partner.wait_ok(new, 3)) == 3


def test_redrive_skips_unsubscribed_types_disabled_partners_and_filtered_statuses(
        stack: Stack, fake_partner: FakePartner) -> None:
    unsubscribed, client = new_partner(stack, fake_partner.url("/status/410/u"))
    disabled, _ = new_partner(stack, fake_partner.url("/status/410/d"))
    filtered, _ = new_partner(stack, fake_partner.url("/status/410/f"))
    healthy, healthy_client = new_partner(stack, fake_partner.url("/status/410/h"))
    stack.worker()
    stack.push("e-skip")  # status 0: every partner takes it, every endpoint answers 410
    everyone = (unsubscribed, disabled, filtered, healthy)
    eventually(lambda: all(letters(stack, p) for p in everyone), "four dead letters")

    assert client.post(UNSUBSCRIBE, {"eventTypes": [ACS]}).json()["code"] == "0"
    patched = stack.http.patch(f"/admin/v1/partners/{disabled}", headers=ADMIN, json={"state": "disabled"})
    assert patched.status_code == 200, patched.text
    patched = stack.http.patch(f"/admin/v1/partners/{filtered}", headers=ADMIN,
                               json={"delivery": {"pushStatuses": [1, 2]}})
    assert patched.status_code == 200, patched.text
    eventually(lambda: dests(stack, unsubscribed) == [], "the unsubscribe")
    eventually(lambda: partner_view(stack, disabled)["state"] == "disabled", "the disabled state")
    eventually(lambda: partner_view(stack, filtered)["delivery"]["pushStatuses"] == [1, 2],
               "the status filter")
    # The healthy one moves to a working endpoint, so the redrive has one letter to send.
    subscribe(healthy_client, fake_partner.url("/ok/h"))
    eventually(lambda: dests(stack, healthy) == [fake_partner.url("/ok/h")], "the new subscription")

    # One letter by its id, then all the others: the settled one is not taken again.
    [healthy_letter] = letters(stack, healthy)
    only = redrive(stack, ids=[healthy_letter["id"]])
    assert only["total"] == 1 and only["counts"] == {"sent": 1, "duplicate": 0, "skipped": 0}
    answer = redrive(stack)
    assert answer["total"] == 3 and answer["counts"] == {"sent": 0, "duplicate": 0, "skipped": 3}
    assert answer["skipped"] == {
        f"partner no longer subscribes to event type {ACS}": 1,
        "partner is disabled": 1,
        "status 0 is not pushed (push statuses [1, 2])": 1,
    }
    outcome = {x["partner"]: (x["outcome"], x.get("reason")) for x in answer["letters"]}
    assert outcome[disabled] == ("skipped", "partner is disabled")
    assert healthy not in outcome
    fake_partner.wait_ok("/ok/h", 1)
    # Skipped letters stay dead (a later redrive, once the partner is back, still sends them).
    for pid in (unsubscribed, disabled, filtered):
        assert [x["state"]["state"] for x in letters(stack, pid)] == ["dead"]
    assert [x["state"]["state"] for x in letters(stack, healthy)] == ["redriven"]
    # Nothing went to a skipped partner's endpoint a second time.
    for path in ("/status/410/u", "/status/410/d", "/status/410/f"):
        assert len(fake_partner.all(path)) == 1

    # The stored destination checks only the partner: the unsubscribed one still gets its URL.
    stored = cli(stack, "redrive", "--to-stored-destination", "--partner", unsubscribed)
    assert "re-enqueued 1 dead letters" in stored
    eventually(lambda: len(fake_partner.all("/status/410/u")) == 2, "the push to the stored URL")
    skipped = cli(stack, "redrive", "--partner", disabled)
    assert "re-enqueued 0 dead letters" in skipped and "partner is disabled" in skipped

