"""Registers the delivery loop on the worker's Faust app (it runs beside the routing agent)."""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import start_http_server

from bridge.delivery.sender import PartnerSender, build_clients
from bridge.delivery.worker import DeliveryWorker
from bridge.errors import ConfigError
from bridge.kafka import AsyncProducer
from bridge.partners import SecretBox
from bridge.registry import Partner, RegistryView
from bridge.settings import Settings
from bridge.urlpolicy import UrlPolicy

log = logging.getLogger("bridge.delivery")


def register(app: faust.App, settings: Settings) -> None:
    if settings.secret_key is None:
        raise ConfigError("BRIDGE_SECRET_KEY must be set: deliveries may be signed with partner secrets")
    box = SecretBox(settings.secret_key.get_secret_value())
    if settings.worker_metrics_port:
        try:
            start_http_server(settings.worker_metrics_port, addr=settings.http_host)
        except OSError as exc:  # another worker on this host already serves it
            log.warning("worker metrics port %d unavailable (%s); metrics not served",
                        settings.worker_metrics_port, exc)

    def secrets_for(partner: Partner) -> list[str]:
        return [box.open(s.token) for s in partner.secrets]

    @app.task
    async def deliver() -> None:
        view = RegistryView(settings).start(wait_caught_up=None)
        producer = AsyncProducer(settings)
        client, insecure = build_clients(str(settings.ca_bundle) if settings.ca_bundle else None)
        worker = DeliveryWorker(settings, view, PartnerSender(client, insecure, UrlPolicy.from_settings(settings)),
                                producer, secrets_for)
        stop = asyncio.Event()
        try:
            await worker.run(stop)
        finally:
            stop.set()
            await client.aclose()
            await insecure.aclose()
            producer.close()
            view.stop()
