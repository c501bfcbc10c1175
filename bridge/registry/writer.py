"""Registry changes: produced to the compacted topics, returned once the local view shows them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from bridge.kafka.producer import AsyncProducer
from bridge.registry.models import Partner, Subscription
from bridge.registry.view import RegistryView
from bridge.settings import Settings
from bridge.topics import topic_table


class RegistryWriter:
    """Writes registry changes and returns once the local view shows them."""

    def __init__(self, settings: Settings, producer: AsyncProducer, view: RegistryView) -> None:
        table = topic_table(settings)
        self.partners_topic = table["partners"].name
        self.subscriptions_topic = table["subscriptions"].name
        self.config_topic = table["config"].name
        self.producer = producer
        self.view = view

    async def _write(self, records: Iterable[tuple[str, str, bytes | None]]) -> None:
        batch = [(topic, key.encode(), value, None) for topic, key, value in records]
        if not batch:
            return
        positions = await self.producer.send_many(batch)  # type: ignore[arg-type]
        last: dict[str, int] = {}
        for (topic, _key, _value, _headers), (_partition, offset) in zip(batch, positions):
            last[topic] = max(last.get(topic, -1), offset)
        for topic, offset in last.items():
            await asyncio.to_thread(self.view.wait_applied, topic, offset)

    async def put_partner(self, partner: Partner) -> None:
        await self._write([(self.partners_topic, partner.id, partner.model_dump_json().encode())])

    async def delete_partner(self, partner_id: str) -> None:
        subs = self.view.subscriptions_of(partner_id)
        await self._write(
            [(self.subscriptions_topic, s.key, None) for s in subs]
            + [(self.partners_topic, partner_id, None)]
        )

    async def put_subscriptions(self, subs: Iterable[Subscription]) -> None:
        await self._write([(self.subscriptions_topic, s.key, s.model_dump_json().encode())
                           for s in subs])

    async def delete_subscriptions(self, subs: Iterable[Subscription]) -> None:
        await self._write([(self.subscriptions_topic, s.key, None) for s in subs])

    async def put_setting(self, name: str, value: Any) -> None:
        await self._write([(self.config_topic, name, json.dumps(value).encode())])
