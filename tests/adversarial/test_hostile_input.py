"""Hostile and careless input against the real stack: nothing a platform or a partner sends may stop
a stage, get a 500, or leak a secret into a log.

One stack for the module: ``event-bridge api`` and ``event-bridge worker`` as real processes
(logs in files), the real broker, and a real receiver subscribed with the longest destination URL
the policy allows (1024 characters), to the event type every case uses. After each input the
module checks the answer, that both processes are alive, that a fresh small event of the **same
partition** (same eventType) reaches the receiver, and that the rejected topic holds the reason.
At the end: no traceback and no secret in any process log.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from bridge.events import EVENT_HEADROOM
from bridge.ingest import MAX_PARAMS_BYTES, MAX_REJECTED_LISTED, REJECTED_EVENT_PREFIX, to_records
from bridge.kafka.admin import ensure_topics
from bridge.platform.notify import MAX_EVENT_DEPTH, parse_notify
from bridge.settings import Settings
from tests.fixtures.artemis import SUBSCRIBE, VIEW, ArtemisClient, make_partner
from tests.fixtures.kafka import Broker
from tests.fixtures.partner import FakePartner, serving_fake_partner
from tests.fixtures.polling import eventually
from tests.fixtures.processes import BridgeProcess, start_api, start_worker
from tests.fixtures.stack import payload, read_topic

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "adversarial-admin-token-" + uuid.uuid4().hex
TYPE = 196883
TEMPLATE = "acs_card_196883_event_acs.json"


@dataclass
class Hostile:
    settings: Settings
    http: httpx.Client
    api: BridgeProcess
    worker: BridgeProcess
    receiver: FakePartner
    dest_path: str
    secrets: list[str]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def partner(self) -> ArtemisClient:
        client = make_partner(self.http, None, f"p-{uuid.uuid4().hex[:6]}", user_id="u",  # type: ignore[arg-type]
                              admin_token=ADMIN_TOKEN)
        self.secrets.append(client.app_secret)
        return client

    def push(self, body: bytes | dict[str, Any]) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post("/eventRcv", content=content, headers={"Content-Type": "application/json"})

    def assert_flowing(self, tag: str) -> None:
        """Both processes alive, and a small event of the same partition reaches the receiver."""
        assert self.api.alive(), self.api.log()[-3000:]
        assert self.worker.alive(), self.worker.log()[-3000:]
        event_id = f"fresh-{tag}-{uuid.uuid4().hex[:8]}"
        answer = self.push(push_of(event(event_id)))
        assert answer.status_code == 200 and answer.json()["data"] is None, answer.text
        self.wait_delivered(event_id, f"after {tag}")

    def wait_delivered(self, event_id: str, when: str) -> None:
        """The receiver got a push carrying ``event_id`` (fails with the worker's log tail)."""
        marker = json.dumps(event_id).encode()
        try:
            eventually(lambda: any(marker in r.body for r in self.receiver.ok(self.dest_path)),
                       f"{event_id} delivered {when}", timeout=120)
        except pytest.fail.Exception:
            pytest.fail(f"{event_id} was not delivered {when}; worker log:\n{self.worker.log()[-3000:]}")

    def rejected_reason(self, needle: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Rejected records whose source or reason mentions ``needle`` (waits for at least one)."""
        def matching(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in records if needle in json.dumps(r)]

        records = read_topic(self.settings, "events.rejected", until=lambda rs: bool(matching(rs)),
                             timeout=timeout)
        found = matching(records)
        assert found, f"no rejected record mentions {needle!r}"
        return found


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    template = copy.deepcopy(payload(TEMPLATE)["params"]["events"][0])
    template.update(eventId=event_id, **changes)
    return template


def push_of(*events: dict[str, Any], **params: Any) -> dict[str, Any]:
    body = copy.deepcopy(payload(TEMPLATE))
    body["params"]["events"] = list(events)
    body["params"].update(params)
    return body


@pytest.fixture(scope="module")
def hostile(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    token = uuid.uuid4().hex[:10]
    settings = Settings(
        kafka_bootstrap=broker.bootstrap, topic_prefix=f"adv-{token}.", app_id=f"adv-{token}",
        partitions=3, mode="prod", admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(Fernet.generate_key().decode()), dest_allow=["127.0.0.0/8"],
        retry_schedule=[0.5, 0.5], retry_jitter=0.0, retry_after_floor_s=0.5, worker_metrics_port=0,
        log_level="INFO", access_log=True)
    ensure_topics(settings)
    logs = Path(tmp_path_factory.mktemp("hostile-logs"))
    with serving_fake_partner() as receiver:
        api, url = start_api(settings, logs)
        worker = start_worker(settings, logs)
        http = httpx.Client(base_url=url, timeout=60)
        prefix = receiver.url("/ok/")
        dest = prefix + "d" * (1024 - len(prefix))
        dest_path = dest[len(receiver.url("")):]
        stack = Hostile(settings, http, api, worker, receiver, dest_path,
                        [settings.secret_key.get_secret_value()])  # type: ignore[union-attr]
        try:
            client = stack.partner()
            answer = client.post(SUBSCRIBE, {"eventTypes": [TYPE], "eventDest": dest})
            assert answer.json()["code"] == "0", answer.text
            stack.assert_flowing("start")
            yield stack
        finally:
            http.close()
            worker.stop()
            api.stop()


# --- sizes -----------------------------------------------------------------------------------


def _record_bytes(body: dict[str, Any]) -> int:
    [record] = to_records(parse_notify(json.dumps(body).encode()), time.time())
    return len(record.encode()) + len(str(record.event_type))


def _event_of_record_size(event_id: str, size: int) -> dict[str, Any]:
    """An event whose stored record is ``size`` bytes (give or take the ingest time's digits)."""
    probe = event(event_id, data={"blob": ""})
    base = _record_bytes(push_of(probe))
    return event(event_id, data={"blob": "x" * (size - base)})


def test_the_largest_carried_event_is_delivered_and_one_byte_more_is_refused(hostile: Hostile) -> None:
    """Finding 1: a near-limit event for a 1024-character destination used to stall routing."""
    limit = hostile.settings.max_record_bytes - EVENT_HEADROOM
    fits = _event_of_record_size(f"fits-{uuid.uuid4().hex[:6]}", limit - 64)
    over = _event_of_record_size(f"over-{uuid.uuid4().hex[:6]}", limit + 64)
    answer = hostile.push(push_of(over))
    assert answer.status_code == 200, answer.text
    [refused] = answer.json()["data"]["rejected"]
    assert refused["index"] == 0 and "can be routed and delivered" in refused["message"]
    assert hostile.rejected_reason(over["eventId"])[0]["error"]["field"] == "params.events[0]"

    answer = hostile.push(push_of(fits))
    assert answer.status_code == 200 and answer.json()["data"] is None, answer.text
    hostile.wait_delivered(fits["eventId"], "at the record limit")
    hostile.assert_flowing("record-limit")


def test_a_large_compact_push_passes_analytics(hostile: Hostile) -> None:
    """Finding 2: analytics re-serialised compact JSON with ", " and outgrew the record limit."""
    event_id = f"compact-{uuid.uuid4().hex[:6]}"
    body = json.dumps(push_of(event(event_id, data=[0] * 400_000)), separators=(",", ":")).encode()
    assert 790_000 < len(body) < 1_000_000
    answer = hostile.push(body)
    assert answer.status_code == 200 and answer.json()["data"] is None, answer.text
    feed = read_topic(hostile.settings, "analytics.events", decode=lambda v: v,
                      until=lambda rs: any(event_id.encode() in r for r in rs), timeout=120)
    assert any(event_id.encode() in r for r in feed)
    hostile.assert_flowing("compact")


# --- shapes that used to give a 500 ----------------------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_at_the_bound_is_carried_and_past_it_refused_per_event(hostile: Hostile) -> None:
    """Finding 3: 600 nested arrays gave a 500 and lost the push's other events."""
    at, past, deep = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("at", "past", "deep"))
    # The event object is level 1 and ``data`` level 2: data nested n arrays is depth n + 1.
    body = push_of(event(at, data=_nested(MAX_EVENT_DEPTH - 1)), event(past, data=_nested(MAX_EVENT_DEPTH)),
                   event(deep, data=_nested(600)))
    answer = hostile.push(body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["accepted"] == 1
    assert [(r["index"], f"deeper than {MAX_EVENT_DEPTH} levels" in r["message"]) for r in data["rejected"]] == [
        (1, True), (2, True)]
    hostile.rejected_reason(deep)
    hostile.assert_flowing("nesting")


def test_a_body_deeper_than_the_decoder_takes_is_a_400(hostile: Hostile) -> None:
    answer = hostile.push(b'{"method":"OnEventNotify","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert answer.status_code == 400, answer.text
    assert "nests deeper" in answer.text
    hostile.assert_flowing("decoder-depth")


def test_lone_surrogates_are_refused_per_event(hostile: Hostile) -> None:
    """Finding 3: a lone surrogate in an eventId, in a valid or a rejected event, gave a 500."""
    good = f"good-{uuid.uuid4().hex[:6]}"
    text = json.dumps(push_of(event("LONE-1"), event(good), {"eventId": "LONE-2", "status": "x"}))
    text = text.replace('"LONE-1"', '"bad-\\ud800-1"').replace('"LONE-2"', '"bad-\\udfff-2"')
    answer = hostile.push(text.encode())
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["accepted"] == 1
    assert [r["index"] for r in data["rejected"]] == [0, 2]
    assert "lone surrogate" in data["rejected"][0]["message"]
    kept = hostile.rejected_reason("bad-\\ud800-1")
    assert "lone surrogate" in kept[0]["error"]["message"]
    hostile.rejected_reason("bad-\\udfff-2")
    hostile.assert_flowing("surrogates")


def test_integers_beyond_the_schemas_are_refused_per_event(hostile: Hostile) -> None:
    """Finding 4: eventType 2^64 and eventLvl 2^40 crashed routing and analytics."""
    ids = [f"int{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    body = push_of(event(ids[0], eventType=2**64), event(ids[1], eventLvl=2**40),
                   event(ids[2], eventType=2**63 - 1), event(ids[3], eventLvl=2**31 - 1))
    answer = hostile.push(body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["accepted"] == 2
    assert [(r["index"], r["field"]) for r in data["rejected"]] == [
        (0, "params.events[0].eventType"), (1, "params.events[1].eventLvl")]
    hostile.rejected_reason(ids[0])
    # The accepted edge values pass analytics (Avro long / int) without a stage failure.
    feed = read_topic(hostile.settings, "analytics.events", decode=lambda v: v,
                      until=lambda rs: all(any(i.encode() in r for r in rs) for i in ids[2:]), timeout=120)
    assert all(any(i.encode() in r for r in feed) for i in ids[2:])
    hostile.assert_flowing("integers")


# --- amplification ---------------------------------------------------------------------------


def test_huge_params_are_refused_per_event_without_writing_copies(hostile: Hostile) -> None:
    """Finding 5: 400 events sharing a 60 KB params.uids wrote ~24 MB to Kafka."""
    marker = uuid.uuid4().hex[:8]
    body = push_of(*(event(f"uids-{marker}-{i}") for i in range(400)), uids="u" * 60_000)
    answer = hostile.push(body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["accepted"] == 0 and data["rejectedCount"] == 400
    assert {r["field"] for r in data["rejected"]} == {"params"}
    assert str(MAX_PARAMS_BYTES) in data["rejected"][0]["message"]
    hostile.assert_flowing("params")


def test_bytes_written_per_push_stay_a_small_multiple_of_the_push(hostile: Hostile) -> None:
    marker = uuid.uuid4().hex[:8]
    body = json.dumps(push_of(*(event(f"copy-{marker}-{i}") for i in range(50)), uids="u" * 1_000)).encode()
    answer = hostile.push(body)
    assert answer.status_code == 200 and answer.json()["data"] is None, answer.text
    needle = f"copy-{marker}-".encode()
    records = read_topic(hostile.settings, "events", decode=lambda v: v,
                         until=lambda rs: sum(needle in r for r in rs) >= 50, timeout=60)
    written = sum(len(r) for r in records if needle in r)
    assert sum(needle in r for r in records) == 50
    assert written <= 4 * len(body), (written, len(body))


def test_a_thousand_empty_events_give_one_entry_one_record_and_few_log_lines(hostile: Hostile) -> None:
    """Finding 5: 1,000 ``{}`` gave 3,000 warning lines and 3,000 rejected records."""
    marker = uuid.uuid4().hex
    before = hostile.api.log().count("rejected")
    answer = hostile.push(push_of(*({} for _ in range(1000)), marker=marker))
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["rejectedCount"] == 1000 and data["accepted"] == 0
    assert [r["index"] for r in data["rejected"]] == list(range(MAX_REJECTED_LISTED))
    assert all(r["message"].count(";") == 2 for r in data["rejected"])  # eventId; eventType; status
    assert len(answer.content) < 30_000
    time.sleep(1)
    assert hostile.api.log().count("rejected") - before <= 2
    records = read_topic(hostile.settings, "events.rejected", timeout=60)
    # The push's params are not in its rejected records; count them by their event content.
    empties = [r for r in records if r.get("event") == {} and r["ingestTs"] > time.time() - 120]
    assert len(empties) == 1000
    hostile.assert_flowing("empties")


def test_a_megabyte_of_invalid_events_writes_a_bounded_amount(hostile: Hostile) -> None:
    marker = uuid.uuid4().hex[:8]
    body = json.dumps(push_of(*({"m": marker} for _ in range(55_000))), separators=(",", ":")).encode()
    assert len(body) < hostile.settings.max_body_bytes
    answer = hostile.push(body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["rejectedCount"] == 55_000
    assert len(answer.content) < 30_000
    needle = marker.encode()
    records = read_topic(hostile.settings, "events.rejected", decode=lambda v: v,
                         until=lambda rs: any(b"more rejected events" in r and needle in r for r in rs),
                         timeout=120)
    mine = [r for r in records if needle in r]
    [overflow] = [r for r in mine if b"more rejected events" in r]
    assert b"kept together" in overflow
    assert sum(len(r) for r in mine) <= 4 * len(body) + 2 * REJECTED_EVENT_PREFIX
    hostile.assert_flowing("megabyte-of-invalid")


# --- oversized bodies --------------------------------------------------------------------------


def _raw_request(url: str, head: bytes, body_chunks: list[bytes]) -> bytes:
    """Write the whole request before reading anything, as the platform's Java client does."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return answer
            answer += data


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversized_body_written_in_full_always_reads_its_413(hostile: Hostile, framing: str) -> None:
    """Finding 6: the 413 was lost to a reset about one time in three at 3 MB."""
    body = b'{"method":"OnEventNotify","params":{"ability":"event_acs","events":[' + b" " * 3_000_000 + b"]}}"
    url = str(hostile.http.base_url).rstrip("/")
    for _ in range(5):
        if framing == "content-length":
            head = (f"POST /eventRcv HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            chunks = [body]
        else:
            head = (b"POST /eventRcv HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
            pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
            chunks = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
        answer = _raw_request(url, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b'"code":"413"' in answer.replace(b" ", b"")
    hostile.assert_flowing("oversized")


# --- signatures --------------------------------------------------------------------------------


def _signed_without_timestamp(client: ArtemisClient, path: str, body: bytes, signed: list[str],
                              nonce: str | None = None) -> dict[str, str]:
    custom = {"x-ca-key": client.app_key}
    if "x-ca-nonce" in signed:
        custom["x-ca-nonce"] = nonce or str(uuid.uuid4())
    lines = ["POST", "*/*", "application/json", *(f"{k}:{custom[k]}" for k in sorted(custom)), path]
    digest = hmac.new(client.app_secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
    return {"Accept": "*/*", "Content-Type": "application/json", **custom,
            "x-ca-timestamp": str(int(time.time() * 1000)),  # sent, but not signed
            "x-ca-signature-headers": ",".join(sorted(custom)),
            "x-ca-signature": base64.b64encode(digest).decode()}


def test_a_signature_without_a_signed_timestamp_is_refused_unless_the_partner_opted_in(hostile: Hostile) -> None:
    """Finding 7: such a request was accepted again at any later time."""
    client = hostile.partner()
    body = json.dumps({"eventTypes": [TYPE], "eventDest": "http://10.0.0.5/cb"}).encode()
    headers = _signed_without_timestamp(client, SUBSCRIBE, body, ["x-ca-key", "x-ca-nonce"])
    answer = hostile.http.post(SUBSCRIBE, content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["reason"] == "missing_timestamp"
    assert "x-ca-timestamp is not signed" in answer.headers["X-Ca-Error-Message"]

    changed = hostile.http.patch(f"/admin/v1/partners/{client.partner_id}", headers=hostile.admin,  # type: ignore[attr-defined]
                                 json={"allowUnsignedTimestamp": True})
    assert changed.status_code == 200 and changed.json()["allowUnsignedTimestamp"] is True
    answer = eventually(  # the api's view catches up with the write
        lambda: (r := hostile.http.post(VIEW, content=b"", headers=_signed_without_timestamp(
            client, VIEW, b"", ["x-ca-key"]))).status_code == 200 and r,
        "the unsigned-timestamp call accepted after the opt-in", timeout=30)
    assert answer.json()["code"] == "0"
    doctor = hostile.http.get(f"/admin/v1/partners/{client.partner_id}/doctor", headers=hostile.admin)  # type: ignore[attr-defined]
    assert "unsigned timestamps allowed" in doctor.text


def test_long_nonces_and_signature_header_lists_are_refused(hostile: Hostile) -> None:
    client = hostile.partner()
    long_nonce = client.headers(VIEW, b"", nonce="n" * 129)
    answer = hostile.http.post(VIEW, content=b"", headers=long_nonce)
    assert (answer.status_code, answer.json()["reason"]) == (401, "bad_nonce")
    # Far past it, the HTTP server itself refuses the header block, before any handler.
    huge = client.headers(VIEW, b"", nonce="n" * 100_000)
    assert 400 <= hostile.http.post(VIEW, content=b"", headers=huge).status_code < 500
    listed = client.headers(VIEW, b"")
    listed["x-ca-signature-headers"] = ",".join(f"x-ca-h{i}" for i in range(40))
    answer = hostile.http.post(VIEW, content=b"", headers=listed)
    assert (answer.status_code, answer.json()["reason"]) == (401, "bad_signature_headers")
    assert client.post(VIEW).json()["code"] == "0"


def test_view_answers_eventlvl_0_for_a_raw_subscription(hostile: Hostile) -> None:
    client = hostile.partner()
    assert client.post(SUBSCRIBE, {"eventTypes": [TYPE], "eventDest": "http://10.0.0.5/cb", "subType": 0,
                                   "eventLvl": [1, 2]}).json()["code"] == "0"
    detail = eventually(lambda: client.post(VIEW).json()["data"]["detail"], "the subscription in the view",
                        timeout=30)
    assert detail == [{"eventTypes": [TYPE], "eventDest": "http://10.0.0.5/cb", "subType": 0, "eventLvl": [0]}]


# --- logs (last: they read what every test above made the processes write) --------------------


def test_no_process_log_holds_a_secret_or_a_traceback(hostile: Hostile) -> None:
    """Finding 8: a token sent in a query string landed in the access log."""
    assert hostile.http.get(f"/healthz?access_token={ADMIN_TOKEN}").status_code == 200
    hostile.http.post(f"/eventRcv?token={hostile.secrets[-1]}", content=b"{}")
    hostile.assert_flowing("logs")
    time.sleep(1)
    logs = {"api": hostile.api.log(), "worker": hostile.worker.log()}
    assert "GET /healthz?[query omitted]" in logs["api"]  # the access log is on, and redacted
    for name, text in logs.items():
        for secret in [ADMIN_TOKEN, *hostile.secrets]:
            assert secret not in text, f"a secret is in the {name} log"
        assert "Traceback" not in text, f"{name} log has a traceback:\n{text[text.find('Traceback') - 500:][:3000]}"
