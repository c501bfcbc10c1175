"""``POST /eventRcv`` (path configurable): the platform's ``OnEventNotify`` pushes."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.api.problems import artemis_envelope
from bridge.errors import AuthError
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


def _check_source(request: Request, settings: Settings) -> None:
    if settings.ingest_token is not None:
        given = request.headers.get("x-bridge-ingest-token", "")
        if not hmac.compare_digest(given.encode(), settings.ingest_token.get_secret_value().encode()):
            raise AuthError("bad_ingest_token", "missing or wrong X-Bridge-Ingest-Token")
    if settings.ingest_allow:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise AuthError("source_not_allowed", f"source {host!r} is not allowed") from None
        if not any(address in ipaddress.ip_network(c, strict=False) for c in settings.ingest_allow):
            raise AuthError("source_not_allowed", f"source {host} is not in BRIDGE_INGEST_ALLOW")


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(tags=["ingest"])

    @router.post(settings.ingest_path, openapi_extra=INGEST_DOC, response_model=None)
    async def event_rcv(request: Request) -> Any:
        """Accept a platform push; 200 only after Kafka acknowledged every event, 503 if it cannot."""
        svc = request.app.state.services
        _check_source(request, svc.settings)
        result = await svc.ingest.accept(await request.body(),
                                         log_events=bool(svc.view.setting("recv_event_log", False)))
        if not result.rejected:
            return artemis_envelope(None)
        listed = result.rejected[:MAX_REJECTED_LISTED]
        more = "" if len(listed) == len(result.rejected) else f", the first {len(listed)} listed"
        return JSONResponse(artemis_envelope(
            {"accepted": result.accepted, "rejected": listed, "rejectedCount": len(result.rejected)},
            "0", f"accepted {result.accepted} events; rejected {len(result.rejected)} invalid events "
            f"(kept in the rejected-events topic{more})"))

    return router
