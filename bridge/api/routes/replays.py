"""``/admin/v1/replays``: start, follow and cancel replays of one partner from the log."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bridge.api.deps import AdminDep, ServicesDep
from bridge.feeds import replay as rp

router = APIRouter(prefix="/admin/v1/replays", tags=["replay"], dependencies=[AdminDep])


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    partnerId: str
    fromTime: datetime | None = Field(None, description="Start (ISO-8601); or fromOffsets.")
    fromOffsets: dict[int, int] | None = Field(None, description="Start offset per partition.")
    toTime: datetime | None = Field(None, description="End (ISO-8601); default now.")
    eventTypes: list[int] | None = None
    dryRun: bool = False
    rate: float | None = Field(None, gt=0, description="Tasks per second.")


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.astimezone()).timestamp()


@router.post("", status_code=202)
async def start_replay(body: ReplayBody, svc: ServicesDep) -> dict[str, Any]:
    """Plan (errors answer at once: unknown partner, before retention, empty range) and start."""
    svc.partners.get(body.partnerId)
    replay_request = rp.ReplayRequest(
        body.partnerId, _ts(body.fromTime), body.fromOffsets, _ts(body.toTime),
        frozenset(body.eventTypes) if body.eventTypes else None, body.dryRun, body.rate)
    the_plan = await asyncio.to_thread(rp.plan, svc.settings, replay_request)
    return await svc.replays.start_job(replay_request, the_plan)


@router.get("")
async def list_replays(svc: ServicesDep) -> list[dict[str, Any]]:
    """Every replay, whichever api started it or runs it now."""
    return svc.replays.list()  # type: ignore[no-any-return]


@router.get("/{replay_id}")
async def get_replay(replay_id: str, svc: ServicesDep) -> dict[str, Any]:
    return svc.replays.get(replay_id)  # type: ignore[no-any-return]


@router.delete("/{replay_id}")
async def cancel_replay(replay_id: str, svc: ServicesDep) -> JSONResponse:
    """Cancel wherever the replay runs; answers once it has stopped (or after 10 s, still running)."""
    return JSONResponse(await svc.replays.cancel(replay_id))
