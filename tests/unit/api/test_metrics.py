"""The api's answers are counted by route kind and status (the dashboard's ingest panel)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from bridge.api.metrics import REQUESTS, RequestMetrics, route_kind


def test_route_kinds_are_few() -> None:
    assert route_kind("/eventRcv", "/eventRcv") == "ingest"
    assert route_kind("/artemis/api/eventService/v1/eventSubscriptionView", "/eventRcv") == "artemis"
    assert route_kind("/admin/v1/partners/42", "/eventRcv") == "admin"
    assert route_kind("/readyz", "/eventRcv") == "health"
    assert route_kind("/anything/else/at/all", "/eventRcv") == "other"


def test_answers_are_counted() -> None:
    app = FastAPI()

    @app.post("/eventRcv")
    def ingest() -> dict[str, str]:
        return {"code": "0"}

    app.add_middleware(RequestMetrics, ingest_path="/eventRcv")
    before_ok = REQUESTS.labels("ingest", "200")._value.get()
    before_404 = REQUESTS.labels("other", "404")._value.get()
    with TestClient(app) as client:
        client.post("/eventRcv", json={})
        client.post("/eventRcv", json={})
        client.get("/nope")
    assert REQUESTS.labels("ingest", "200")._value.get() == before_ok + 2
    assert REQUESTS.labels("other", "404")._value.get() == before_404 + 1
