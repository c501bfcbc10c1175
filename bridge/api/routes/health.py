"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bridge.errors import KafkaUnavailable
from bridge.kafka.admin import missing_topics

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Kafka answers and every topic of the topic table exists."""
    settings = request.app.state.settings
    try:
        # librdkafka's admin call blocks; keep it off the event loop.
        missing = await asyncio.to_thread(missing_topics, settings, 3.0)
    except KafkaUnavailable as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    if missing:
        return JSONResponse(
            {"status": "unavailable", "reason": "topics missing (run `event-bridge topics create`)",
             "missing": missing},
            status_code=503,
        )
    return JSONResponse({"status": "ready", "kafka": settings.kafka_bootstrap})
