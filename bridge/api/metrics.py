"""HTTP answers of the api by kind of route, for the dashboard's ingest rate and answers.

A pure ASGI middleware: it sees every answer, including the 401/413 that handlers never reach.
The route label is one of a few fixed kinds, so its cardinality stays bounded whatever is requested.
"""

from __future__ import annotations

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("bridge_http_requests_total", "HTTP answers of the api, by route kind and status",
                   ["route", "status"])


def route_kind(path: str, ingest_path: str) -> str:
    if path == ingest_path:
        return "ingest"
    if path.startswith("/artemis/"):
        return "artemis"
    if path.startswith("/admin/"):
        return "admin"
    if path in ("/healthz", "/readyz"):
        return "health"
    if path.startswith("/metrics"):
        return "metrics"
    return "other"


class RequestMetrics:
    def __init__(self, app: ASGIApp, ingest_path: str) -> None:
        self.app = app
        self.ingest_path = ingest_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = route_kind(scope["path"], self.ingest_path)

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                REQUESTS.labels(kind, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted_send)
