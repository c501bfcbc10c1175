"""``create_app(settings)``: the FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from bridge import __version__
from bridge.api.routes import health
from bridge.kafka import AsyncProducer
from bridge.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the application; network connections are opened by the lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.producer = AsyncProducer(settings)
        try:
            yield
        finally:
            app.state.producer.close()

    app = FastAPI(title="event-bridge", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.include_router(health.router)
    app.mount("/metrics", make_asgi_app())
    return app
