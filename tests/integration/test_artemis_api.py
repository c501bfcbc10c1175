"""Partners and the Artemis subscription API over the real broker.

Requests are signed by ``ArtemisClient`` (tests/fixtures/artemis.py), an independent
implementation written from the compatibility spec (§2.2): it does not use the server's signing
module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import client_config
from bridge.registry.view import RegistryView
from bridge.settings import Settings
from tests.fixtures.artemis import (
    ADMIN_TOKEN,
    SUBSCRIBE,
    UNSUBSCRIBE,
    VIEW,
    ArtemisClient,
    admin_headers,
    make_partner,
)
from tests.fixtures.cli import run_cli

pytestmark = pytest.mark.integration

@pytest.fixture
def api_settings(kafka_settings: Settings) -> Settings:
    settings = kafka_settings.model_copy(update={
        "mode": "prod",
        "admin_token": SecretStr(ADMIN_TOKEN),
        "secret_key": SecretStr(Fernet.generate_key().decode()),
        "dest_allow": ["127.0.0.0/8"],
        "max_body_bytes": 4096,
    })
    ensure_topics(settings)
    return settings


@pytest.fixture
def http(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client


def cli_create_partner(settings: Settings, name: str, types: str) -> tuple[str, str, str]:
    out = run_cli(settings, "partner", "create", "--name", name, "--user-id", "admin",
                  "--event-types", types)
    assert out.returncode == 0, out.stderr
    app_key = re.search(r"appKey\s+(\d+)", out.stdout)
    secret = re.search(r"appSecret\s+(\w+)", out.stdout)
    pid = re.search(r"(p-[0-9a-f]{12})", out.stdout)
    assert app_key and secret and pid, out.stdout
    return pid.group(1), app_key.group(1), secret.group(1)


def test_cli_partner_subscribes_views_unsubscribes(api_settings: Settings, http: TestClient) -> None:
    partner_id, app_key, secret = cli_create_partner(api_settings, "cli-partner", "all")
    client = ArtemisClient(http, app_key, secret)

    ok = client.post(SUBSCRIBE, {"eventTypes": [196893, 198914],
                                 "eventDest": "http://127.0.0.1:9080/eventRcv", "subType": 2})
    assert ok.status_code == 200 and ok.json() == {"code": "0", "msg": "success", "data": None}

    # Read-your-writes: the view right after the subscribe shows it.
    view = client.post(VIEW)
    assert view.json()["code"] == "0"
    assert view.json()["data"]["detail"] == [{
        "eventTypes": [196893, 198914], "eventDest": "http://127.0.0.1:9080/eventRcv",
        "subType": 2, "eventLvl": [0, 1, 2, 3]}]

    # Re-subscribing one type to a new destination moves it; the partner now has two.
    client.post(SUBSCRIBE, {"eventTypes": [198914], "eventDest": "http://127.0.0.1:9081/b"})
    details = client.post(VIEW).json()["data"]["detail"]
    assert {(tuple(d["eventTypes"]), d["eventDest"]) for d in details} == {
        ((196893,), "http://127.0.0.1:9080/eventRcv"), ((198914,), "http://127.0.0.1:9081/b")}

    assert client.post(UNSUBSCRIBE, {"eventTypes": [196893, 198914]}).json()["code"] == "0"
    assert client.post(VIEW).json()["data"] == {"detail": []}

    listed = run_cli(api_settings, "partner", "list")
    assert partner_id in listed.stdout and "cli-partner" in listed.stdout

    changed = run_cli(api_settings, "partner", "set", partner_id, "--linkage-mode", "merged",
                      "--picture-mode", "attach", "--push-statuses", "0,1,2,5")
    assert changed.returncode == 0, changed.stderr
    # The CLI wrote to Kafka; this API instance sees it when its view applies the record.
    for _ in range(50):
        shown = http.get(f"/admin/v1/partners/{partner_id}",
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["delivery"]
        if shown["linkageMode"] == "merged":
            break
        time.sleep(0.1)
    assert (shown["linkageMode"], shown["pictureMode"], shown["pushStatuses"]) == ("merged", "attach", [0, 1, 2, 5])
    bad = run_cli(api_settings, "partner", "set", partner_id, "--linkage-mode", "x")
    assert bad.returncode == 1 and "linkageMode" in bad.stderr


def test_two_partners_stay_isolated(http: TestClient, api_settings: Settings) -> None:
    a = make_partner(http, name="a")
    b = make_partner(http, name="b")
    for client, port in ((a, 9001), (b, 9002)):
        assert client.post(SUBSCRIBE, {"eventTypes": [131330],
                                       "eventDest": f"http://127.0.0.1:{port}/"}).json()["code"] == "0"
    a.post(UNSUBSCRIBE, {"eventTypes": [131330]})
    assert a.post(VIEW).json()["data"]["detail"] == []
    assert b.post(VIEW).json()["data"]["detail"][0]["eventTypes"] == [131330]

    # A separate process's view (the routing stage's) sees the same registry, and it survives
    # a restart of the API.
    other = RegistryView(api_settings).start(wait_caught_up=30)
    try:
        assert [s.event_dest for s in other.by_event_type(131330)] == ["http://127.0.0.1:9002/"]
    finally:
        other.stop()
    with TestClient(create_app(api_settings)) as restarted:
        again = ArtemisClient(restarted, b.app_key, b.app_secret)
        assert again.post(VIEW).json()["data"]["detail"][0]["eventDest"] == "http://127.0.0.1:9002/"


def test_forbidden_types_refused_by_name(http: TestClient) -> None:
    client = make_partner(http, event_types=[196893])
    answer = client.post(SUBSCRIBE, {"eventTypes": [196893, 131330, 771760130],
                                     "eventDest": "http://127.0.0.1:9000/"})
    assert answer.status_code == 200
    body = answer.json()
    assert body["code"] != "0" and "[131330, 771760130]" in body["msg"] and body["data"] is None
    assert client.post(VIEW).json()["data"]["detail"] == []


@pytest.mark.parametrize("dest", [
    "http://169.254.169.254/latest/meta-data", "http://100.100.100.200/", "ftp://10.0.0.1/x",
    "http://[fe80::1]/", "http://" + "a" * 1020 + ".com/",
])
def test_destination_policy(http: TestClient, dest: str) -> None:
    client = make_partner(http)
    body = client.post(SUBSCRIBE, {"eventTypes": [1], "eventDest": dest}).json()
    assert body["code"] != "0" and "eventDest" in body["msg"]


def test_lenient_client_quirks(http: TestClient) -> None:
    client = make_partner(http)
    # Nested type list (PHP), eventLevel instead of eventLvl (Odoo), token/passBack, unknown fields.
    answer = client.post(SUBSCRIBE, {"eventTypes": [[196893]], "eventDest": "http://10.0.0.5:8080/x",
                                     "subType": 2, "eventLevel": [0, 1, 2], "token": "webhook-token",
                                     "passBack": 1, "somethingNew": True})
    assert answer.json()["code"] == "0", answer.text
    detail = client.post(VIEW).json()["data"]["detail"]
    assert detail == [{"eventTypes": [196893], "eventDest": "http://10.0.0.5:8080/x", "subType": 2,
                       "eventLvl": [0, 1, 2]}]
    # An unsubscribe body that repeats eventDest/token/passBack (seen in the wild).
    assert client.post(UNSUBSCRIBE, {"eventTypes": [196893], "eventDest": "x", "token": "t",
                                     "passBack": 1}).json()["code"] == "0"


def _reason(answer: Any) -> str:
    assert answer.status_code == 401, answer.text
    assert answer.headers["X-Ca-Error-Message"]
    return str(answer.json()["reason"])


def test_every_auth_failure_is_401_with_reason(http: TestClient) -> None:
    client = make_partner(http)
    payload = {"eventTypes": [1], "eventDest": "http://10.0.0.1/"}
    body = json.dumps(payload).encode()

    unknown = ArtemisClient(http, "99999999", "x" * 20)
    assert _reason(unknown.post(VIEW)) == "unknown_key"
    assert _reason(client.post(VIEW, secret="wrong-secret-000000")) == "bad_signature"
    assert _reason(client.post(VIEW, timestamp_ms=int(time.time() * 1000) - 3_600_000)) == "expired_timestamp"

    headers = client.headers(SUBSCRIBE, body, nonce="fixed-nonce-1")
    assert http.post(SUBSCRIBE, content=body, headers=headers).json()["code"] == "0"
    assert _reason(http.post(SUBSCRIBE, content=body, headers=headers)) == "replayed_nonce"

    tampered = client.headers(SUBSCRIBE, body, content_md5=True)
    assert _reason(http.post(SUBSCRIBE, content=body.replace(b"10.0.0.1", b"10.0.0.2"),
                             headers=tampered)) == "content_md5_mismatch"
    assert http.post(SUBSCRIBE, content=body, headers=client.headers(SUBSCRIBE, body, content_md5=True)
                     ).json()["code"] == "0"

    assert _reason(http.post(VIEW)) in {"missing_key", "missing_signature"}

    partner_id = next(p["id"] for p in http.get("/admin/v1/partners", headers=admin_headers()).json()
                      if p["appKey"] == client.app_key)
    http.patch(f"/admin/v1/partners/{partner_id}", headers=admin_headers(), json={"state": "disabled"})
    assert _reason(client.post(VIEW)) == "disabled_partner"


def test_php_client_seconds_timestamp_two_headers(http: TestClient) -> None:
    client = make_partner(http)
    ts = str(int(time.time()))
    string = f"POST\n*/*\napplication/json\nx-ca-key:{client.app_key}\nx-ca-timestamp:{ts}\n{VIEW}"
    sig = base64.b64encode(hmac.new(client.app_secret.encode(), string.encode(), hashlib.sha256).digest())
    answer = http.post(VIEW, headers={
        "Accept": "*/*", "Content-Type": "application/json", "X-Ca-Key": client.app_key,
        "X-Ca-Timestamp": ts, "X-Ca-Signature-Headers": "x-ca-key,x-ca-timestamp",
        "X-Ca-Signature": sig.decode()})
    assert answer.status_code == 200 and answer.json()["code"] == "0"


@pytest.mark.parametrize(("body", "field"), [
    (b"{not json", "body"),
    (b"[1,2]", "body"),
    (b'{"eventDest": "http://10.0.0.1/"}', "eventTypes"),
    (b'{"eventTypes": "196893", "eventDest": "http://10.0.0.1/"}', "eventTypes"),
    (b'{"eventTypes": [true], "eventDest": "http://10.0.0.1/"}', "eventTypes"),
    (b'{"eventTypes": [1], "eventDest": 5}', "eventDest"),
    (b'{"eventTypes": [1], "eventDest": "http://10.0.0.1/", "subType": 7}', "subType"),
    (b'{"eventTypes": [1], "eventDest": "http://10.0.0.1/", "subType": 1, "eventLvl": [99]}', "eventLvl"),
    (b"\xff\xfe\x00garbage", "body"),
])
def test_malformed_requests_get_400_naming_the_field(http: TestClient, body: bytes, field: str) -> None:
    client = make_partner(http)
    answer = http.post(SUBSCRIBE, content=body, headers=client.headers(SUBSCRIBE, body))
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and answer.json()["data"] is None
    assert http.get("/healthz").status_code == 200


def test_huge_body_answered_413(http: TestClient) -> None:
    client = make_partner(http)
    body = json.dumps({"eventTypes": [1], "eventDest": "http://10.0.0.1/", "pad": "x" * 10_000}).encode()
    answer = http.post(SUBSCRIBE, content=body, headers=client.headers(SUBSCRIBE, body))
    assert answer.status_code == 413


def test_admin_bodies_are_typed_and_bad_ones_name_their_field(http: TestClient) -> None:
    schemas = http.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["DeliveryChanges"]["properties"]["maxBatch"]["maximum"] == 50
    assert schemas["PartnerChanges"]["properties"]["delivery"] == {"$ref": "#/components/schemas/DeliveryChanges"}
    assert "delivery" in schemas["NewPartner"]["properties"]

    bad_new = http.post("/admin/v1/partners", headers=admin_headers(),
                        json={"name": "typed", "userId": "u1", "delivery": {"timeoutS": 0}})
    assert bad_new.status_code == 400
    assert bad_new.json()["error"]["code"] == "InvalidInput"
    assert bad_new.json()["error"]["field"] == "delivery.timeoutS"

    created = http.post("/admin/v1/partners", headers=admin_headers(),
                        json={"name": "typed", "userId": "u1", "delivery": {"maxBatch": 10}}).json()
    assert created["delivery"]["maxBatch"] == 10
    for body, field in [({"delivery": {"maxBatch": 51}}, "delivery.maxBatch"),
                        ({"delivery": {"nope": 1}}, "delivery.nope"),
                        ({"appKey": "12345678"}, "appKey"), ({"state": "gone"}, "state")]:
        bad = http.patch(f"/admin/v1/partners/{created['id']}", headers=admin_headers(), json=body)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == field, bad.text
    # A change keeps what it does not name.
    patched = http.patch(f"/admin/v1/partners/{created['id']}", headers=admin_headers(),
                         json={"delivery": {"ordered": True}}).json()
    assert patched["delivery"]["maxBatch"] == 10 and patched["delivery"]["ordered"] is True


def test_admin_api_lifecycle_and_rotation(http: TestClient) -> None:
    assert http.get("/admin/v1/partners").status_code == 401
    assert http.get("/admin/v1/partners", headers={"Authorization": "Bearer nope"}).status_code == 401

    created = http.post("/admin/v1/partners", headers=admin_headers(),
                        json={"name": "rot", "userId": "u1", "eventTypes": None}).json()
    pid, old_secret = created["id"], created["appSecret"]
    assert "appSecret" not in http.get(f"/admin/v1/partners/{pid}", headers=admin_headers()).json()

    patched = http.patch(f"/admin/v1/partners/{pid}", headers=admin_headers(),
                         json={"delivery": {"pushStatuses": [0, 1, 2, 4], "linkageMode": "merged"}})
    assert patched.json()["delivery"]["pushStatuses"] == [0, 1, 2, 4]
    bad = http.patch(f"/admin/v1/partners/{pid}", headers=admin_headers(),
                     json={"delivery": {"pushStatuses": [9]}})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "delivery.pushStatuses"

    rotated = http.post(f"/admin/v1/partners/{pid}/rotate-secret", headers=admin_headers()).json()
    new_secret = rotated["appSecret"]
    assert new_secret != old_secret
    # Both secrets work during the grace period.
    for secret in (old_secret, new_secret):
        assert ArtemisClient(http, created["appKey"], secret).post(VIEW).json()["code"] == "0"

    assert http.delete(f"/admin/v1/partners/{pid}", headers=admin_headers()).status_code == 204
    assert http.get(f"/admin/v1/partners/{pid}", headers=admin_headers()).status_code == 404


def test_secrets_encrypted_at_rest(api_settings: Settings, http: TestClient) -> None:
    from confluent_kafka import Consumer, TopicPartition

    created = http.post("/admin/v1/partners", headers=admin_headers(),
                        json={"name": "enc", "userId": "u"}).json()
    consumer = Consumer(client_config(api_settings, **{"group.id": "enc-check"}))
    consumer.assign([TopicPartition(api_settings.topic_prefix + "partners", 0, 0)])
    raw = b""
    for _ in range(100):
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            raw += msg.value() or b""
        elif raw:
            break
    consumer.close()
    assert created["appKey"].encode() in raw
    assert created["appSecret"].encode() not in raw
