"""``POST /eventRcv`` (path configurable): the platform's ``OnEventNotify`` pushes.

Every push is served by :class:`IngestEndpoint`, a plain ASGI endpoint that the application calls
ahead of FastAPI (``bridge.api.server.BridgeApp``): per push, FastAPI's middleware stack, router
and request handling cost more CPU than ingest itself (py-spy of the api in bench s1). It keeps
what the other routes get: the request metrics, the body limit with its 413 drain, the error
answers of ``bridge.api.problems`` and a 500 for anything unforeseen. The FastAPI route of
:func:`build_router` publishes the endpoint in the OpenAPI document and answers through the same
:func:`answer_push` when the application is used without that shortcut.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.api.limits import BodyLimit
from bridge.api.metrics import RequestMetrics
from bridge.api.problems import artemis_envelope, bridge_error_response
from bridge.errors import AuthError, BridgeError
from bridge.ingest import MAX_REJECTED_LISTED
from bridge.settings import Settings

INGEST_DOC = {
    "requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "required": ["method", "params"],
        "properties": {
            "method": {"type": "string", "enum": ["OnEventNotify"]},
            "params": {"type": "object", "required": ["ability", "events"], "properties": {
                "ability": {"type": "string"}, "sendTime": {"type": "string"},
                "events": {"type": "array", "items": {"type": "object"}}}},
        }}}}},
}

TOKEN_HEADER = "x-bridge-ingest-token"


def _render(content: Any) -> bytes:
    # As starlette's JSONResponse renders: the answer's bytes do not depend on the route taken.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


#: The answer to a push whose events were all accepted (most of them), written once.
ACCEPTED = _render(artemis_envelope(None))


def check_source(settings: Settings, token: str, host: str) -> None:
    """The platform's credentials: BRIDGE_INGEST_TOKEN and BRIDGE_INGEST_ALLOW, when set."""
    if settings.ingest_token is not None:
        if not hmac.compare_digest(token.encode(), settings.ingest_token.get_secret_value().encode()):
            raise AuthError("bad_ingest_token", "missing or wrong X-Bridge-Ingest-Token")
    if settings.ingest_allow:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise AuthError("source_not_allowed", f"source {host!r} is not allowed") from None
        if not any(address in ipaddress.ip_network(c, strict=False) for c in settings.ingest_allow):
            raise AuthError("source_not_allowed", f"source {host} is not in BRIDGE_INGEST_ALLOW")


async def answer_push(svc: Any, body: bytes, token: str, host: str) -> bytes:
    """Accept a platform push; the JSON of the 200 answer, given only after Kafka acknowledged
    every event. Raises BridgeError (503 if Kafka cannot take them)."""
    check_source(svc.settings, token, host)
    result = await svc.ingest.accept(body, log_events=bool(svc.view.setting("recv_event_log", False)))
    if not result.rejected:
        return ACCEPTED
    listed = result.rejected[:MAX_REJECTED_LISTED]
    more = "" if len(listed) == len(result.rejected) else f", the first {len(listed)} listed"
    return _render(artemis_envelope(
        {"accepted": result.accepted, "rejected": listed, "rejectedCount": len(result.rejected)},
        "0", f"accepted {result.accepted} events; rejected {len(result.rejected)} invalid events "
        f"(kept in the rejected-events topic{more})"))


class IngestEndpoint:
    """``POST`` of the ingest path as a plain ASGI app: read the body, answer, nothing else."""

    def __init__(self, token_configured: bool) -> None:
        self.token_configured = token_configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientDisconnect()  # as starlette's Request.body() does
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        token = ""
        if self.token_configured:
            for name, value in scope["headers"]:
                if name == b"x-bridge-ingest-token":
                    token = value.decode("latin-1")
                    break
        client = scope.get("client")
        try:
            content = await answer_push(scope["app"].state.services, body, token,
                                        client[0] if client else "")
        except BridgeError as exc:
            response = bridge_error_response(Request(scope), exc)
            await response(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(len(content)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": content})


def ingest_app(settings: Settings) -> ASGIApp:
    """The ingest endpoint inside the same metrics, body limit and 500 guard as every route."""
    endpoint = IngestEndpoint(token_configured=settings.ingest_token is not None)
    limited = BodyLimit(endpoint, max_bytes=settings.max_body_bytes)
    return ServerErrorMiddleware(RequestMetrics(limited, ingest_path=settings.ingest_path))


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(settings.ingest_path, openapi_extra=INGEST_DOC, response_model=None)
    async def event_rcv(request: Request) -> Any:
        """Accept a platform push; 200 only after Kafka acknowledged every event, 503 if it cannot."""
        content = await answer_push(request.app.state.services, await request.body(),
                                    request.headers.get(TOKEN_HEADER, ""),
                                    request.client.host if request.client else "")
        return Response(content, media_type="application/json")

    return router
