"""Operator API under ``/admin/v1``, bearer ``BRIDGE_ADMIN_TOKEN``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.deps import AdminDep, ServicesDep
from bridge.delivery import readback
from bridge.errors import InvalidInput
from bridge.ops import redrive
from bridge.registry.models import NewPartner, PartnerChanges
from bridge.registry.subscriptions import view_data
from bridge.settings import KNOWN_STATUSES

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[AdminDep])


@router.post("/partners", status_code=201)
async def create_partner(payload: NewPartner, svc: ServicesDep) -> dict[str, Any]:
    """Create a partner; the answer is the only place its appSecret is ever shown."""
    partner, secret = await svc.partners.create(payload)
    return {**partner.public(), "appSecret": secret}


@router.get("/partners")
async def list_partners(svc: ServicesDep) -> list[dict[str, Any]]:
    return [p.public() for p in svc.partners.list()]


@router.get("/partners/{partner_id}")
async def get_partner(partner_id: str, svc: ServicesDep) -> dict[str, Any]:
    partner = svc.partners.get(partner_id)
    return {**partner.public(), "subscriptions": view_data(svc.view.subscriptions_of(partner.id))}


@router.patch("/partners/{partner_id}")
async def update_partner(
    partner_id: str,
    svc: ServicesDep,
    changes: Annotated[PartnerChanges, Body(
        examples=[{"state": "disabled"}, {"delivery": {"pushStatuses": [0, 1, 2, 4]}}])],
) -> dict[str, Any]:
    """Change name, userId, eventTypes, state (active/disabled) or delivery settings."""
    return (await svc.partners.update(partner_id, changes)).public()


@router.delete("/partners/{partner_id}", status_code=204)
async def delete_partner(partner_id: str, svc: ServicesDep) -> Response:
    """Delete a partner and all its subscriptions."""
    await svc.partners.delete(partner_id)
    return Response(status_code=204)


@router.post("/partners/{partner_id}/rotate-secret")
async def rotate_secret(partner_id: str, svc: ServicesDep) -> dict[str, Any]:
    """A new appSecret; the previous one stays valid for BRIDGE_SECRET_GRACE_HOURS."""
    partner, secret = await svc.partners.rotate_secret(partner_id)
    return {**partner.public(), "appSecret": secret}


class RuntimeSettings(BaseModel):
    """Settings an operator changes at runtime; they apply at once in every process."""

    model_config = ConfigDict(extra="forbid")
    pushStatuses: list[int] | None = Field(
        default=None, description="Statuses pushed to partners without their own override (B6).")
    recvEventLog: bool | None = Field(
        default=None, description="Log one `recv event` line per ingested event.")


def _runtime(svc: Any) -> dict[str, Any]:
    return {
        "pushStatuses": svc.view.setting("push_statuses", svc.settings.push_statuses),
        "recvEventLog": bool(svc.view.setting("recv_event_log", False)),
    }


@router.get("/settings")
async def get_settings_(svc: ServicesDep) -> dict[str, Any]:
    return _runtime(svc)


@router.patch("/settings")
async def patch_settings(changes: RuntimeSettings, svc: ServicesDep) -> dict[str, Any]:
    """Change push statuses or the recv-event log without a restart or re-subscription."""
    if changes.pushStatuses is not None:
        bad = [s for s in changes.pushStatuses if s not in KNOWN_STATUSES]
        if bad:
            raise InvalidInput(f"unknown statuses {bad}; known {sorted(KNOWN_STATUSES)}", "pushStatuses")
        await svc.writer.put_setting("push_statuses", sorted(set(changes.pushStatuses)))
    if changes.recvEventLog is not None:
        await svc.writer.put_setting("recv_event_log", changes.recvEventLog)
    return _runtime(svc)


@router.get("/partners/{partner_id}/deliveries")
async def partner_deliveries(partner_id: str, svc: ServicesDep, limit: int = 50) -> dict[str, Any]:
    """The partner's most recent delivery attempts: what we sent and what the partner answered."""
    svc.partners.get(partner_id)
    outcomes = await asyncio.to_thread(readback.recent_outcomes, svc.settings, partner_id,
                                       max(1, min(limit, 500)))
    return {"partnerId": partner_id, "outcomes": outcomes}


@router.get("/partners/{partner_id}/doctor")
async def partner_doctor(partner_id: str, svc: ServicesDep) -> dict[str, Any]:
    """The seed FAQ's troubleshooting steps, answered for this partner."""
    from bridge.ops import doctor

    svc.partners.get(partner_id)
    checks = await doctor.diagnose(svc.settings, svc.view, partner_id)
    return {"partnerId": partner_id, "checks": [
        {"question": c.question, "verdict": c.verdict, "detail": c.detail} for c in checks]}


@router.get("/dlq")
async def list_dead_letters(svc: ServicesDep, partner: str | None = None,
                            since: float | None = None, state: str | None = None,
                            limit: int = 100) -> dict[str, Any]:
    """Dead letters, newest first (optionally one partner's, since an epoch time, or in a state:
    ``dead`` or ``redriven``), each with its state and the letters its redrives became."""
    letters = await asyncio.to_thread(readback.dead_letters, svc.settings, partner, since, None, state)
    letters.reverse()
    return {"count": len(letters), "deadLetters": letters[: max(1, min(limit, 1000))]}


class Redrive(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partner: str | None = None
    since: float | None = None
    #: ``current``: route each letter's event by the partner's subscription as it is now;
    #: ``stored``: the URL the letter died at.
    destination: Literal["current", "stored"] = "current"
    #: Also letters an earlier redrive settled.
    includeRedriven: bool = False
    #: Only these letters (ids from ``GET /dlq``).
    ids: list[str] | None = Field(default=None, max_length=10_000)


@router.post("/dlq/redrive")
async def redrive_dead_letters(req: Redrive, svc: ServicesDep) -> dict[str, Any]:
    """Send dead letters again and settle them; counts per outcome and each letter's outcome."""
    letters = await asyncio.to_thread(readback.dead_letters, svc.settings, req.partner, req.since,
                                      None, None if req.includeRedriven else "dead")
    if req.ids is not None:
        wanted = set(req.ids)
        letters = [letter for letter in letters if letter["id"] in wanted]
    report = await redrive.run(svc.settings, svc.view, svc.producer, letters, req.destination)
    return report.as_dict()


@router.get("/breakers")
async def breakers(svc: ServicesDep) -> dict[str, Any]:
    """Circuit breaker state per destination, as the delivery workers last reported it."""
    return {"breakers": dict(svc.view.breakers)}
