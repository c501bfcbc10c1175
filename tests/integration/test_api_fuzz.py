"""Fuzzing the HTTP API in-process, with the real broker behind it.

1. Schemathesis over the app's own OpenAPI document (``app.openapi()``): every operation — admin
   (with the admin bearer token, so requests reach the handlers), Artemis (once with the generated
   ``X-Ca-*`` headers, once correctly signed) and ``/eventRcv`` — must never answer 5xx, and every
   answer whose Content-Type says JSON must be JSON.
2. Hypothesis properties on Artemis request parsing through the real HTTP path, signed by the
   independent ``Signer`` below (written from the compatibility spec §2.2, like ``ArtemisClient``
   in test_artemis_api.py; it does not use the server's signing module).
3. Hypothesis properties on ``/eventRcv`` with arbitrary JSON.

One app per module: its lifespan (registry view, producer) is run by a module-scoped
``TestClient`` that stays open. Schemathesis reaches the same app through ``_Forwarder``, which
passes HTTP requests on and answers lifespan messages itself, so that schemathesis never starts
(or, after each test, stops) a second lifespan on the app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error

from bridge.api import create_app
from bridge.kafka.admin import ensure_topics
from bridge.settings import Settings

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "fuzz-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "/artemis/api/eventService/v1"
SUBSCRIBE = f"{BASE}/eventSubscriptionByEventTypes"
UNSUBSCRIBE = f"{BASE}/eventUnSubscriptionByEventTypes"
INGEST = "/eventRcv"

#: Hypothesis settings shared by every property here: bounded, no deadline (each request goes
#: through Kafka), no example database written into the tree, and no health checks that only
#: flag slow I/O or the module-scoped fixtures.
SLOW_IO = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much,
           HealthCheck.data_too_large]


def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=SLOW_IO)


def make_settings(bootstrap: str, prefix: str) -> Settings:
    """Explicit values for everything the API's behaviour depends on (the env is not cleaned yet
    when module-scoped fixtures run)."""
    return Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        app_id=f"{prefix}app",
        partitions=3,
        mode="prod",
        admin_token=SecretStr(ADMIN_TOKEN),
        secret_key=SecretStr(Fernet.generate_key().decode()),
        dest_allow=["127.0.0.0/8"],
        dest_allow_private=True,
        ingest_path=INGEST,
        ingest_token=None,
        ingest_allow=[],
        max_body_bytes=1_000_000,
        signature_window_s=900,
    )


# --- the app, its lifespan, and the way schemathesis reaches it ----------------------------------


class _Forwarder:
    """The ASGI app schemathesis calls: HTTP goes to the module's live app, lifespan stays here."""

    def __init__(self) -> None:
        self.target: FastAPI | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # The module's TestClient runs the real lifespan; acknowledge schemathesis's own.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if self.target is None:
            raise RuntimeError("the module's app is not running (use the `live` fixture)")
        await self.target(scope, receive, send)


FORWARDER = _Forwarder()

# The published document. create_app opens no connection (the lifespan does), so an app that is
# never started serves it; its settings match the live app's in everything the document shows.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(make_settings("127.0.0.1:1", "openapi-doc.")).openapi())
SCHEMA.app = FORWARDER


@dataclass(frozen=True)
class Signer:
    """Artemis signing as the official Java SDK does it (spec §2.2), written independently:
    HMAC-SHA256 over ``POST\\n*/*\\n[Content-MD5\\n]application/json\\n`` + the sorted
    ``x-ca-*:value`` lines + the path, Base64."""

    app_key: str
    app_secret: str

    def headers(self, path: str, body: bytes = b"", *, content_md5: bool = False) -> dict[str, str]:
        custom = {
            "x-ca-key": self.app_key,
            "x-ca-nonce": str(uuid.uuid4()),  # fresh for every request: replay protection
            "x-ca-timestamp": str(int(time.time() * 1000)),
        }
        fixed = {"Accept": "*/*", "Content-Type": "application/json"}
        lines = ["POST", "*/*"]
        if content_md5:
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            fixed["Content-MD5"] = md5
            lines.append(md5)
        lines.append("application/json")
        lines += [f"{name}:{custom[name]}" for name in sorted(custom)]
        lines.append(path)
        digest = hmac.new(self.app_secret.encode(), "\n".join(lines).encode(), hashlib.sha256).digest()
        return {**fixed, **custom, "x-ca-signature-headers": ",".join(sorted(custom)),
                "x-ca-signature": base64.b64encode(digest).decode()}


@dataclass(frozen=True)
class Live:
    settings: Settings
    http: TestClient
    signer: Signer
    partner_id: str
    #: A second partner, only for the admin PATCH property (it may end up disabled).
    patch_target: str


@pytest.fixture(scope="module")
def live(broker: Any) -> Iterator[Live]:
    settings_ = make_settings(broker.bootstrap, f"fuzz-{uuid.uuid4().hex[:10]}.")
    ensure_topics(settings_)
    app = create_app(settings_)
    # raise_server_exceptions=False: an unhandled exception is the 500 a client would see.
    with TestClient(app, raise_server_exceptions=False) as http:
        created = http.post("/admin/v1/partners", headers=ADMIN,
                            json={"name": "fuzz", "userId": "fuzz", "eventTypes": None})
        assert created.status_code == 201, created.text  # also waits for the registry view
        body = created.json()
        target = http.post("/admin/v1/partners", headers=ADMIN, json={"name": "patch-target", "userId": "u"})
        assert target.status_code == 201, target.text
        FORWARDER.target = app
        try:
            yield Live(settings_, http, Signer(body["appKey"], body["appSecret"]), body["id"],
                       target.json()["id"])
        finally:
            FORWARDER.target = None


# --- 1. schemathesis over the published document ----------------------------------------------


def json_when_declared(ctx: Any, response: Any, case: Any) -> None:
    """A response whose Content-Type says JSON carries a body that parses as JSON."""
    content_type = next((values[0] for name, values in response.headers.items()
                         if name.lower() == "content-type" and values), "")
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            json.loads(response.content)
        except ValueError as exc:
            raise AssertionError(
                f"{case.operation.label} answered {response.status_code} with Content-Type "
                f"{content_type!r} and a body that is not JSON ({exc}): {response.content[:200]!r}"
            ) from None


CHECKS = [not_a_server_error, json_when_declared]
#: What the signed variant must not drop: the headers the signature covers.
_SIGNATURE_SLOTS = {"accept", "content-md5", "content-type", "date"}


def _artemis(case: Any, live: Live) -> None:
    if case.method.upper() != "POST":  # the coverage phase's unexpected methods: 405
        case.call_and_validate(checks=CHECKS)
        return
    # As generated, but with the partner's real appKey wherever a key is sent, so that the
    # verifier's later steps (timestamp, Content-MD5, signature, nonce) see the generated values.
    headers = dict(case.headers or {})
    for name in headers:
        if name.lower() == "x-ca-key":
            headers[name] = live.signer.app_key
    case.headers = headers
    unsigned = case.call_and_validate(checks=CHECKS)
    assert unsigned.status_code in {401, 413}, (unsigned.status_code, unsigned.text_lossy())

    # The same body, correctly signed: the handler runs.
    case.headers = {name: value for name, value in headers.items()
                    if not name.lower().startswith("x-ca-") and name.lower() not in _SIGNATURE_SLOTS}
    case.query = {}
    signed = case.call_and_validate(headers=live.signer.headers(case.path), checks=CHECKS)
    assert signed.status_code in {200, 400, 413}, (signed.status_code, signed.text_lossy())
    envelope = signed.json()
    assert {"code", "msg", "data"} <= envelope.keys(), envelope
    event(f"signed: {signed.status_code} code={envelope['code']}")


@SCHEMA.parametrize()
@fuzz_settings(30)
def test_published_operations_never_answer_5xx(case: Any, live: Live) -> None:
    if case.path.startswith(BASE):
        _artemis(case, live)
        return
    headers = ADMIN if case.path.startswith("/admin/") else None
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    event(f"status {response.status_code}")
    if headers is not None and response.request.headers.get("Authorization") == ADMIN["Authorization"]:
        # Past authentication. (Negative cases about the security scheme drop the header.)
        assert response.status_code != 401, response.text_lossy()
    partner_id = (case.path_parameters or {}).get("partner_id")
    known = {live.partner_id, live.patch_target}
    if partner_id is not None and partner_id not in known and case.method.upper() in {"PATCH", "DELETE"}:
        # A partner that does not exist is never changed or deleted.
        assert 400 <= response.status_code < 500, (case.method, case.formatted_path, response.status_code)


JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25,
)

# Random partner ids never name a partner, so the PATCH handler proper (PartnerService.update,
# delivery_prefs) is exercised here on a real one.
_DELIVERY = st.fixed_dictionaries({}, optional={
    "timeoutS": st.floats(-1, 200) | st.integers(-1, 10**20) | JSON,
    "maxInFlight": st.integers(-1, 2000) | st.floats(0, 2000) | JSON,
    "pushStatuses": st.lists(st.integers(-1, 9)) | st.none() | JSON,
    "linkageMode": st.sampled_from(["separate", "merged", "other"]) | JSON,
    "signing": st.booleans() | JSON, "ordered": st.booleans() | JSON, "verifyTls": st.booleans() | JSON,
    "unknownPref": JSON,
})
PARTNER_CHANGES = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=10) | JSON,
    "userId": st.text(max_size=10) | JSON,
    "eventTypes": st.lists(st.integers(-2, 2**40), max_size=5) | st.none() | JSON,
    "state": st.sampled_from(["active", "disabled", "deleted"]) | JSON,
    "delivery": _DELIVERY | JSON,
}) | st.dictionaries(st.text(max_size=10), JSON, max_size=3) | JSON


PATCHABLE = {None, "body", "name", "userId", "eventTypes", "state", "delivery",
             *(f"delivery.{name}" for name in ("timeoutS", "maxInFlight", "pushStatuses", "linkageMode",
                                               "signing", "ordered", "verifyTls"))}


@fuzz_settings(40)
@given(changes=PARTNER_CHANGES)
def test_admin_patch_existing_partner_any_json(live: Live, changes: Any) -> None:
    answer = live.http.patch(f"/admin/v1/partners/{live.patch_target}",
                             headers={**ADMIN, "Content-Type": "application/json"},
                             content=json.dumps(changes).encode())
    assert answer.status_code in {200, 400}, (answer.status_code, answer.text)
    body = answer.json()
    field = (body.get("error") or {}).get("field")
    event(f"{answer.status_code} field={field if field in PATCHABLE else 'other'}")
    if answer.status_code == 200:
        assert body["id"] == live.patch_target and "appSecret" not in body, body
    else:
        assert body["error"]["code"] == "InvalidInput", body


# --- 2. Artemis request parsing through the real HTTP path --------------------------------------
SUBSCRIBE_FIELDS = ("eventTypes", "eventDest", "subType", "eventLvl", "eventLevel", "token", "passBack")
# Arbitrary JSON in every field, mixed with near-valid values so that parsing gets past the
# first field often enough to exercise the later ones.
_NEAR_VALID = {
    "eventTypes": st.lists(st.integers(min_value=-5, max_value=2**40) | st.lists(st.integers(0, 10**6),
                                                                                 max_size=3),
                           max_size=8),
    "eventDest": st.sampled_from(["http://127.0.0.1:9/x", "http://10.0.0.5:8080/cb", "https://example.com/",
                                  "http://169.254.169.254/", "ftp://10.0.0.1/", "http://[::1]:80/",
                                  "http://a b/", "http://" + "a" * 1100 + "/"]) | st.text(max_size=40),
    "subType": st.integers(-1, 3),
    "eventLvl": st.lists(st.integers(-1, 33), max_size=40),
    "eventLevel": st.lists(st.integers(-1, 33), max_size=5),
    "token": st.text(max_size=1100),
    "passBack": st.integers(-1, 2),
}
_ANY_FIELD = {name: st.one_of(JSON, _NEAR_VALID[name]) for name in SUBSCRIBE_FIELDS}
SUBSCRIBE_BODIES = st.one_of(
    # Any subset of the fields, each arbitrary JSON or near-valid.
    st.fixed_dictionaries({}, optional=_ANY_FIELD),
    # The two required fields valid, so that the optional ones decide (and some bodies succeed).
    st.fixed_dictionaries(
        {"eventTypes": st.lists(st.integers(0, 2**31), min_size=1, max_size=5),
         "eventDest": st.sampled_from(["http://127.0.0.1:9/x", "http://10.0.0.5:8080/cb",
                                       "https://example.com/events"])},
        optional={name: _ANY_FIELD[name] for name in SUBSCRIBE_FIELDS[2:]} | {"unknownField": JSON}),
)


def _artemis_answer(live: Live, path: str, raw: bytes, *, content_md5: bool = False) -> Any:
    answer = live.http.post(path, content=raw, headers=live.signer.headers(path, raw, content_md5=content_md5))
    assert answer.status_code != 401, f"the signer did not pass authentication: {answer.text}"
    assert answer.status_code in {200, 400, 413}, (answer.status_code, answer.text, raw[:300])
    envelope = answer.json()
    assert isinstance(envelope, dict) and {"code", "msg", "data"} <= envelope.keys(), envelope
    event(f"{answer.status_code} code={envelope['code']} field={envelope.get('field')}")
    if answer.status_code == 400:
        assert envelope["code"] == "400" and envelope["data"] is None and envelope.get("field"), envelope
    assert live.http.get("/healthz").status_code == 200
    return answer


@fuzz_settings(60)
@given(body=st.one_of(JSON, SUBSCRIBE_BODIES), ascii_only=st.booleans())
def test_subscribe_any_json_body(live: Live, body: Any, ascii_only: bool) -> None:
    _artemis_answer(live, SUBSCRIBE, json.dumps(body, ensure_ascii=ascii_only).encode())


@fuzz_settings(40)
@given(body=st.one_of(JSON, SUBSCRIBE_BODIES))
def test_unsubscribe_any_json_body(live: Live, body: Any) -> None:
    _artemis_answer(live, UNSUBSCRIBE, json.dumps(body).encode())


@fuzz_settings(60)
@given(raw=st.binary(max_size=512), content_md5=st.booleans())
@example(raw=b"\xff\xfe\x00garbage", content_md5=False)
@example(raw=b'{"eventTypes": [1], "eventDest": "http://10.0.0.1/", "subType": NaN}', content_md5=True)
def test_subscribe_any_bytes(live: Live, raw: bytes, content_md5: bool) -> None:
    answer = _artemis_answer(live, SUBSCRIBE, raw, content_md5=content_md5)
    assert answer.status_code in {200, 400}, answer.status_code


# Random bytes and st.recursive never nest this deep: a RecursionError once answered 500 here.
@pytest.mark.parametrize("path", [SUBSCRIBE, UNSUBSCRIBE])
def test_artemis_deeply_nested_json_is_400_not_500(live: Live, path: str) -> None:
    depth = 5000
    raw = b'{"eventTypes":' + b"[" * depth + b"]" * depth + b"}"
    answer = live.http.post(path, content=raw, headers=live.signer.headers(path, raw))
    assert live.http.get("/healthz").status_code == 200
    assert answer.status_code == 400, (answer.status_code, answer.text[:200])
    assert answer.json()["field"] == "body"


# --- 3. /eventRcv with arbitrary JSON ----------------------------------------------------------

_EVENT = st.fixed_dictionaries({}, optional={
    "eventId": st.text(max_size=300) | JSON,
    "eventType": st.integers() | st.from_regex(r"\A-?[0-9]{1,12}\Z") | JSON,
    "status": st.integers(-1, 20) | st.from_regex(r"\A[0-9]{1,3}\Z") | JSON,
    "eventLvl": st.integers() | st.text(max_size=5) | JSON,
    "srcIndex": st.text(max_size=20) | JSON,
    "srcType": st.sampled_from(["eventRule", "door"]) | JSON,
    "happenTime": st.text(max_size=30) | JSON,
    "linkageResult": JSON,
    "data": JSON,
})
_PARAMS = st.fixed_dictionaries({}, optional={
    "ability": st.sampled_from(["event_acs", "event_rule", "event_vss"]) | JSON,
    "sendTime": st.text(max_size=30) | JSON,
    "events": st.lists(_EVENT | JSON, max_size=5) | JSON,
    "uids": JSON,
})
_VALID_EVENT = st.fixed_dictionaries(
    {"eventId": st.text(min_size=1, max_size=64).filter(str.strip),
     "eventType": st.integers(0, 2**31) | st.integers(0, 10**6).map(str),
     "status": st.integers(0, 15)},
    optional={"eventLvl": st.integers(0, 3) | st.none(), "srcIndex": st.text(max_size=20),
              "srcType": st.sampled_from(["eventRule", "door"]), "happenTime": st.text(max_size=30),
              "linkageResult": JSON, "data": JSON, "extra": JSON},
)
ENVELOPES = st.one_of(
    st.fixed_dictionaries({"method": st.just("OnEventNotify") | JSON, "params": _PARAMS | JSON},
                          optional={"extra": JSON}),
    # A usable envelope whose events are mostly valid: the path that writes to Kafka.
    st.fixed_dictionaries(
        {"method": st.just("OnEventNotify"),
         "params": st.fixed_dictionaries(
             {"ability": st.sampled_from(["event_acs", "event_rule", "event_vss"]),
              "events": st.lists(_VALID_EVENT | _EVENT, max_size=5)},
             optional={"sendTime": st.text(max_size=30) | JSON, "uids": JSON})}),
)


@fuzz_settings(60)
@given(body=st.one_of(JSON, ENVELOPES))
def test_event_rcv_any_json(live: Live, body: Any) -> None:
    answer = live.http.post(INGEST, content=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})
    assert answer.status_code in {200, 400, 413, 422}, (answer.status_code, answer.text)
    envelope = answer.json()
    assert isinstance(envelope, dict) and {"code", "msg", "data"} <= envelope.keys(), envelope
    rejected = envelope["data"]["rejected"] if answer.status_code == 200 and envelope["data"] else []
    event(f"{answer.status_code} field={envelope.get('field')} rejected={bool(rejected)}")
    assert live.http.get("/healthz").status_code == 200


# Records over Kafka's size limit once answered 503 (retry forever); they are permanent: 413.
@pytest.mark.parametrize("pushed", [
    pytest.param({"eventId": "big-1", "eventType": 1, "status": 0, "pad": "a" * 999_800}, id="valid-event"),
    pytest.param({"eventType": 1, "status": 0, "pad": "\U0001F600" * 200_000}, id="rejected-event-non-ascii"),
])
def test_event_rcv_record_over_kafka_limit_is_not_5xx(live: Live, pushed: dict[str, Any]) -> None:
    body = json.dumps({"method": "OnEventNotify", "params": {"ability": "event_acs", "events": [pushed]}},
                      ensure_ascii=False).encode()
    assert len(body) <= live.settings.max_body_bytes
    answer = live.http.post(INGEST, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
