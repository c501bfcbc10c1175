"""The ingest endpoint ahead of FastAPI answers exactly as FastAPI's route does.

``BridgeApp`` serves ``POST /eventRcv`` through a plain ASGI endpoint; the FastAPI route stays for
the OpenAPI document. Both must give the same status, headers and body for every kind of push.
The services are in-memory (no lifespan, no Kafka): what is compared is the HTTP layer.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.api.metrics import REQUESTS
from bridge.ingest import Ingest
from bridge.settings import Settings


class MemoryProducer:
    async def send_many(self, records: list[Any]) -> list[tuple[int, int]]:
        return [(0, i) for i in range(len(records))]


class View:
    def setting(self, name: str, default: Any = None) -> Any:
        return default


def client(settings: Settings, shortcut: bool) -> TestClient:
    app = create_app(settings)
    app.state.services = SimpleNamespace(settings=settings, view=View(),
                                         ingest=Ingest(settings, MemoryProducer()))  # type: ignore[arg-type]
    if not shortcut:
        app.ingest_endpoint = None
    return TestClient(app)  # not entered: no lifespan, so no Kafka


EVENT = {"eventId": "e1", "eventType": 196893, "status": 0, "srcIndex": "door-1"}
GOOD = {"method": "OnEventNotify", "params": {"ability": "event_acs", "events": [EVENT]}}
PARTLY = {"method": "OnEventNotify", "params": {"ability": "event_acs", "events": [
    EVENT, {"eventId": "x", "eventType": "abc", "status": 0}]}}
SETTINGS = Settings(kafka_bootstrap="127.0.0.1:1", max_body_bytes=10_000)

REQUESTS_TO_COMPARE: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "accepted": ("POST", json.dumps(GOOD).encode(), {}),
    "partly invalid": ("POST", json.dumps(PARTLY).encode(), {}),
    "not JSON": ("POST", b"not json", {}),
    "wrong method": ("POST", b'{"method":"x","params":{}}', {}),
    "empty": ("POST", b"", {}),
    "too large": ("POST", b"x" * 20_000, {}),
    "too deep": ("POST", b'{"method":"OnEventNotify","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
    "GET": ("GET", b"", {}),
}


@pytest.mark.parametrize("name", list(REQUESTS_TO_COMPARE))
def test_the_shortcut_answers_as_fastapis_route(name: str) -> None:
    method, body, headers = REQUESTS_TO_COMPARE[name]
    answers = []
    for shortcut in (True, False):
        answer = client(SETTINGS, shortcut).request(method, "/eventRcv", content=body, headers={
            "Content-Type": "application/json", **headers})
        answers.append((answer.status_code, sorted(answer.headers.items()), answer.content))
    assert answers[0] == answers[1]


def test_the_ingest_token_is_checked_on_both_paths() -> None:
    guarded = SETTINGS.model_copy(update={"ingest_token": SecretStr("platform-secret")})
    body = json.dumps(GOOD).encode()
    for shortcut in (True, False):
        http = client(guarded, shortcut)
        refused = http.post("/eventRcv", content=body)
        assert refused.status_code == 401 and refused.json()["reason"] == "bad_ingest_token"
        assert http.post("/eventRcv", content=body,
                         headers={"X-Bridge-Ingest-Token": "platform-secret"}).status_code == 200


def test_the_shortcut_counts_its_answers_and_keeps_the_openapi_entry() -> None:
    before = REQUESTS.labels("ingest", "200")._value.get()
    too_large = REQUESTS.labels("ingest", "413")._value.get()
    http = client(SETTINGS, shortcut=True)
    http.post("/eventRcv", content=json.dumps(GOOD).encode())
    http.post("/eventRcv", content=b"x" * 20_000)
    assert REQUESTS.labels("ingest", "200")._value.get() == before + 1
    assert REQUESTS.labels("ingest", "413")._value.get() == too_large + 1
    assert "post" in create_app(SETTINGS).openapi()["paths"]["/eventRcv"]
