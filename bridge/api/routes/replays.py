"""``/admin/v1/replays``: start, follow and cancel replays of one partner from the log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bridge import replay as rp
from bridge.api.deps import AdminDep, ServicesDep
from bridge.errors import NotFound

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


def _jobs(request: Request) -> dict[str, tuple[rp.ReplayProgress, asyncio.Task[Any], list[bool]]]:
    if not hasattr(request.app.state, "replays"):
        request.app.state.replays = {}
    return request.app.state.replays  # type: ignore[no-any-return]


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.astimezone()).timestamp()


@router.post("", status_code=202)
async def start_replay(body: ReplayBody, request: Request, svc: ServicesDep) -> dict[str, Any]:
    """Plan (errors answer at once: unknown partner, before retention, empty range) and start."""
    svc.partners.get(body.partnerId)
    replay_request = rp.ReplayRequest(
        body.partnerId, _ts(body.fromTime), body.fromOffsets, _ts(body.toTime),
        frozenset(body.eventTypes) if body.eventTypes else None, body.dryRun, body.rate)
    the_plan = await asyncio.to_thread(rp.plan, svc.settings, replay_request)
    progress = rp.ReplayProgress(uuid.uuid4().hex[:12], body.partnerId, body.dryRun, the_plan.total)
    cancel = [False]
    task = asyncio.create_task(rp.run(svc.settings, svc.view, svc.producer, replay_request, progress,
                                      the_plan, lambda: cancel[0]))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # errors live in progress
    _jobs(request)[progress.id] = (progress, task, cancel)
    return progress.as_dict()


@router.get("")
async def list_replays(request: Request) -> list[dict[str, Any]]:
    return [progress.as_dict() for progress, _, _ in _jobs(request).values()]


@router.get("/{replay_id}")
async def get_replay(replay_id: str, request: Request) -> dict[str, Any]:
    if replay_id not in _jobs(request):
        raise NotFound(f"no replay {replay_id!r}")
    return _jobs(request)[replay_id][0].as_dict()


@router.delete("/{replay_id}")
async def cancel_replay(replay_id: str, request: Request) -> JSONResponse:
    if replay_id not in _jobs(request):
        raise NotFound(f"no replay {replay_id!r}")
    progress, task, cancel = _jobs(request)[replay_id]
    cancel[0] = True
    await asyncio.wait([task], timeout=10)
    return JSONResponse(progress.as_dict())
