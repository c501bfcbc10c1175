"""The registry view over the real broker: records already in the compacted topics still decode."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import client_config
from bridge.registry.view import RegistryView
from bridge.settings import Settings
from bridge.topics import topic_table
from tests.fixtures.registry_records import (
    V_PARTNER_BEFORE_MAX_BATCH,
    V_PARTNER_FULL,
    V_SUB_DEFAULTS,
    V_SUB_FULL,
)

pytestmark = pytest.mark.integration


def test_view_reads_records_written_by_the_previous_codec(kafka_settings: Settings) -> None:
    ensure_topics(kafka_settings)
    table = topic_table(kafka_settings)
    producer = Producer(client_config(kafka_settings))
    for key, value in ((b"p-0123456789ab", V_PARTNER_FULL), (b"p-old", V_PARTNER_BEFORE_MAX_BATCH),
                       (b"p-gone", V_PARTNER_FULL), (b"p-gone", None)):
        producer.produce(table["partners"].name, key=key, value=value)
    for key, value in ((b"p-0123456789ab:196893", V_SUB_DEFAULTS), (b"p-0123456789ab:131329", V_SUB_FULL),
                       (b"p-x:1", b'{"partner_id": "p-x"}')):  # unreadable: must not stop the view
        producer.produce(table["subscriptions"].name, key=key, value=value)
    assert producer.flush(10) == 0

    view = RegistryView(kafka_settings).start(wait_caught_up=30)
    try:
        assert {p.id for p in view.all_partners()} == {"p-0123456789ab", "p-old"}
        partner = view.partner_by_app_key("24681357")
        assert partner is not None and partner.delivery.max_batch == 50
        assert view.partner("p-old").delivery.max_batch == 1  # type: ignore[union-attr]
        assert [s.event_type for s in view.subscriptions_of("p-0123456789ab")] == [131329, 196893]
        assert [s.sub_type for s in view.by_event_type(131329)] == [2]
        assert view.error is not None and "p-x:1" in view.error
    finally:
        view.stop()
