"""/healthz and /readyz against the real broker."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.kafka.admin import ensure_topics
from bridge.settings import Settings

pytestmark = pytest.mark.integration


def test_ready_only_when_topics_exist(kafka_settings: Settings) -> None:
    kafka_settings = kafka_settings.model_copy(
        update={"secret_key": SecretStr(Fernet.generate_key().decode())})
    with TestClient(create_app(kafka_settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert kafka_settings.topic_prefix + "events" in not_ready.json()["missing"]
        ensure_topics(kafka_settings)
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_not_ready_when_kafka_unreachable() -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", mode="dev",
                        secret_key=SecretStr(Fernet.generate_key().decode()))
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "cannot reach Kafka" in response.json()["reason"]
