"""`event-bridge topics create`: idempotent, and refuses a partition mismatch."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from bridge.errors import TopicError
from bridge.kafka.admin import ensure_topics, missing_topics
from bridge.kafka.config import client_config
from bridge.settings import Settings
from bridge.topics import topic_table

pytestmark = pytest.mark.integration


def test_create_twice_then_mismatch_refused(kafka_settings: Settings) -> None:
    assert missing_topics(kafka_settings) == sorted(s.name for s in topic_table(kafka_settings).values())

    first = ensure_topics(kafka_settings)
    assert {r.action for r in first} == {"created"}
    second = ensure_topics(kafka_settings)
    assert {r.action for r in second} == {"exists"}
    assert missing_topics(kafka_settings) == []

    metadata = AdminClient(client_config(kafka_settings)).list_topics(timeout=10)
    for spec in topic_table(kafka_settings).values():
        assert len(metadata.topics[spec.name].partitions) == spec.partitions

    wrong = kafka_settings.model_copy(update={"partitions": kafka_settings.partitions + 1})
    with pytest.raises(TopicError, match="partitions, expected"):
        ensure_topics(wrong)
