"""``create_app(settings)``: the FastAPI application and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import make_asgi_app
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import __version__
from bridge.api.limits import BodyLimit
from bridge.api.metrics import RequestMetrics
from bridge.api.nonces import KafkaNonceStore
from bridge.api.problems import install_error_handlers
from bridge.api.routes import admin, artemis, health, ingest, replays
from bridge.feeds.replay_jobs import ReplayJobs
from bridge.ingest import Ingest
from bridge.kafka.producer import AsyncProducer
from bridge.platform.artemis import NonceCache, NonceStore
from bridge.registry.partners import PartnerService
from bridge.registry.view import RegistryView
from bridge.registry.writer import RegistryWriter
from bridge.settings import Settings
from bridge.urlpolicy import UrlPolicy

log = logging.getLogger("bridge.api")


@dataclass
class Services:
    """What the routes use; built by the lifespan, reached through ``app.state.services``."""

    settings: Settings
    producer: AsyncProducer
    view: RegistryView
    writer: RegistryWriter
    partners: PartnerService
    nonces: NonceStore
    url_policy: UrlPolicy
    ingest: Ingest
    replays: ReplayJobs


class BridgeApp(FastAPI):
    """FastAPI, with the platform's pushes served ahead of it by ``ingest.ingest_app``.

    Only a ``POST`` to exactly the ingest path takes the shortcut (no ``root_path`` in play); any
    other method or path, the OpenAPI document included, is FastAPI's as before.
    """

    ingest_path: str = ""
    ingest_endpoint: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (self.ingest_endpoint is not None and scope["type"] == "http"
                and scope["method"] == "POST" and scope["path"] == self.ingest_path
                and not scope.get("root_path") and not self.root_path):
            scope["app"] = self
            await self.ingest_endpoint(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def nonce_store(settings: Settings) -> NonceCache | KafkaNonceStore:
    """The configured nonce store (BRIDGE_NONCE_STORE), not yet started."""
    # A nonce must be remembered for as long as its timestamp can still pass the window on
    # either side, so twice the window.
    window_s = 2 * settings.signature_window_s
    if settings.nonce_store == "memory":
        return NonceCache(window_s=window_s, max_entries=settings.nonce_max_entries)
    return KafkaNonceStore(settings, window_s=window_s, max_entries=settings.nonce_max_entries)


def create_app(settings: Settings) -> BridgeApp:
    """Build the application; network connections are opened by the lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        producer = AsyncProducer(settings)
        # The view loads in the background: /healthz answers at once, and routes that need the
        # registry answer 503 until it has caught up (or while Kafka is unreachable).
        view = RegistryView(settings).start(wait_caught_up=None)
        writer = RegistryWriter(settings, producer, view)
        nonces = nonce_store(settings)
        if isinstance(nonces, KafkaNonceStore):
            nonces.start()
        jobs = ReplayJobs(settings, view, producer)
        jobs.start()
        app.state.services = Services(
            settings=settings,
            producer=producer,
            view=view,
            writer=writer,
            partners=PartnerService(settings, view, writer),
            nonces=nonces,
            url_policy=UrlPolicy.from_settings(settings),
            ingest=Ingest(settings, producer),
            replays=jobs,
        )
        try:
            yield
        finally:
            await jobs.close()
            if isinstance(nonces, KafkaNonceStore):
                nonces.stop()
            view.stop()
            producer.close()

    app = BridgeApp(title="event-bridge", version=__version__, lifespan=lifespan,
                  description="Artemis-compatible event subscription API, ingest and admin API.")
    app.state.settings = settings
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, ingest_path=settings.ingest_path)  # outermost: sees 413s too
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(artemis.router)
    app.include_router(admin.router)
    app.include_router(replays.router)
    app.include_router(ingest.build_router(settings))
    app.ingest_path = settings.ingest_path
    app.ingest_endpoint = ingest.ingest_app(settings)
    app.mount("/metrics", make_asgi_app())
    return app
