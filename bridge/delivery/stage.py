"""The delivery stage of the worker: the Kafka consumer feeding dispatch, with its HTTP clients
and secrets.

``consumer.DeliveryConsumer`` (task topics, commits) is the source, ``dispatch.Dispatcher``
(slots, pushes, settle) does the work, the worker's shared producer is the sink.
"""

from __future__ import annotations

import asyncio

from bridge.delivery.consumer import DeliveryConsumer
from bridge.delivery.delivered import DeliveredIds
from bridge.delivery.dispatch import Dispatcher
from bridge.delivery.sender import PartnerSender, build_clients, close_clients
from bridge.errors import ConfigError
from bridge.registry.models import Partner
from bridge.registry.partners import SecretBox
from bridge.runtime.worker import Stage, Worker
from bridge.settings import Settings
from bridge.urlpolicy import UrlPolicy


def stage(settings: Settings) -> Stage:
    """The delivery loop over bridge.deliveries and the retry tiers, after checking its secret."""
    if settings.secret_key is None:
        raise ConfigError("BRIDGE_SECRET_KEY must be set: deliveries may be signed with partner secrets")
    box = SecretBox(settings.secret_key.get_secret_value())

    def secrets_for(partner: Partner) -> list[str]:
        return [box.open(s.token) for s in partner.secrets]

    async def run(worker: Worker) -> None:
        view = await worker.registry()
        await asyncio.to_thread(view.wait_ready, 120.0)
        client, insecure = build_clients(str(settings.ca_bundle) if settings.ca_bundle else None)
        sender = PartnerSender(client, insecure, UrlPolicy.from_settings(settings))
        delivered = DeliveredIds(settings.redelivery_window_s)
        consumer = DeliveryConsumer(settings, delivered)
        try:
            await consumer.open()
            # Outcomes, retries and dead letters go through the worker's shared producer, which
            # the worker flushes after every stage has drained.
            await Dispatcher(settings, view, sender, worker.producer, consumer, secrets_for,
                             delivered).run(worker.stop)
        finally:
            try:
                await consumer.close()  # after the drain: commits what it settled
            finally:
                await close_clients(client, insecure)

    return Stage("delivery", run)
