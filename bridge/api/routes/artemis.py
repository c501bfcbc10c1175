"""The three Artemis event-service endpoints, signed exactly as the platform's gateway expects."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request

from bridge.api.deps import PartnerDep, ServicesDep, json_body
from bridge.api.problems import CODE_DEST_REFUSED, CODE_FORBIDDEN_TYPES, artemis_envelope
from bridge.registry.subscriptions import (
    forbidden_types,
    parse_event_types,
    parse_subscribe,
    subscriptions_for,
    view_data,
)
from bridge.urlpolicy import check_url

log = logging.getLogger("bridge.api")
router = APIRouter(prefix="/artemis/api/eventService/v1", tags=["artemis"])

_SIGNED = {
    "description": "Artemis-signed (X-Ca-Key, X-Ca-Signature, X-Ca-Signature-Headers, …).",
    "parameters": [
        {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
        for h in ("X-Ca-Key", "X-Ca-Signature", "X-Ca-Signature-Headers", "X-Ca-Timestamp",
                  "X-Ca-Nonce", "Content-MD5")
    ],
}


def _body_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        **_SIGNED,
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": properties, "required": required}}}},
    }


_INTS = {"type": "array", "items": {"type": "integer"}}


@router.post(
    "/eventSubscriptionByEventTypes",
    openapi_extra=_body_schema(
        {"eventTypes": _INTS, "eventDest": {"type": "string", "maxLength": 1024},
         "subType": {"type": "integer", "enum": [0, 1, 2]}, "eventLvl": _INTS,
         "token": {"type": "string"}, "passBack": {"type": "integer", "enum": [0, 1]}},
        ["eventTypes", "eventDest"],
    ),
)
async def subscribe(request: Request, partner: PartnerDep, svc: ServicesDep) -> dict[str, Any]:
    """Subscribe the calling partner to event types at a callback URL (B1–B4)."""
    parsed = parse_subscribe(await json_body(request))
    denied = forbidden_types(partner, parsed.event_types)
    if denied:
        return artemis_envelope(
            None, CODE_FORBIDDEN_TYPES,
            f"user {partner.user_id} is not permitted to receive event types {denied}",
        )
    verdict = check_url(parsed.event_dest, svc.url_policy)
    if not verdict.ok:
        return artemis_envelope(None, CODE_DEST_REFUSED, f"eventDest refused: {verdict.message}")
    await svc.writer.put_subscriptions(subscriptions_for(partner, parsed))
    log.info("partner %s subscribed %s -> %s (subType %s)", partner.id, list(parsed.event_types),
             parsed.event_dest, parsed.sub_type)
    return artemis_envelope(None)


@router.post(
    "/eventUnSubscriptionByEventTypes",
    openapi_extra=_body_schema({"eventTypes": _INTS}, ["eventTypes"]),
)
async def unsubscribe(request: Request, partner: PartnerDep, svc: ServicesDep) -> dict[str, Any]:
    """Remove event types from the calling partner's subscriptions only (B7, FAQ 4)."""
    types = set(parse_event_types(await json_body(request)))
    gone = [s for s in svc.view.subscriptions_of(partner.id) if s.event_type in types]
    await svc.writer.delete_subscriptions(gone)
    log.info("partner %s unsubscribed %s", partner.id, sorted(types))
    return artemis_envelope(None)


@router.post("/eventSubscriptionView", openapi_extra=_SIGNED)
async def view(partner: PartnerDep, svc: ServicesDep) -> dict[str, Any]:
    """The calling partner's subscriptions (spec §1.3 shape, plus subType and eventLvl)."""
    return artemis_envelope(view_data(svc.view.subscriptions_of(partner.id)))
