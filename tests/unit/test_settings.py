"""The one settings object."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from bridge.errors import ConfigError
from bridge.settings import Settings, child_env
from bridge.topics import topic_table


def test_defaults_match_architecture() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "localhost:9092"
    assert settings.topic_prefix == "bridge."
    assert settings.push_statuses == [0, 1, 2]
    assert settings.http_port == 8080


def test_reads_bridge_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_PUSH_STATUSES", "0, 1,2,4")
    monkeypatch.setenv("BRIDGE_DEST_ALLOW", "127.0.0.0/8,10.1.0.0/16")
    monkeypatch.setenv("BRIDGE_TOPIC_PREFIX", "acme.")
    monkeypatch.setenv("BRIDGE_ADMIN_TOKEN", "t0ken")
    settings = Settings()
    assert settings.push_statuses == [0, 1, 2, 4]
    assert settings.dest_allow == ["127.0.0.0/8", "10.1.0.0/16"]
    assert topic_table(settings)["events"].name == "acme.events"
    assert "t0ken" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [("BRIDGE_PUSH_STATUSES", "0,7", "unknown event status"),
     ("BRIDGE_DEST_ALLOW", "not-a-cidr", "not-a-cidr"),
     ("BRIDGE_HTTP_PORT", "70000", "http_port")],
)
def test_bad_values_name_the_problem(monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=needle):
        Settings()


def test_secrets_required_outside_dev() -> None:
    with pytest.raises(ConfigError, match="BRIDGE_ADMIN_TOKEN, BRIDGE_SECRET_KEY must be set"):
        Settings().require_secrets()
    Settings(mode="dev").require_secrets()
    Settings(admin_token=SecretStr("a"), secret_key=SecretStr("b")).require_secrets()


def test_child_env_round_trips() -> None:
    settings = Settings(push_statuses=[0, 4], admin_token=SecretStr("x"), partitions=3)
    env = child_env(settings)
    assert env["BRIDGE_PUSH_STATUSES"] == "0,4" and env["BRIDGE_ADMIN_TOKEN"] == "x"
    rebuilt = Settings(**{k[len("BRIDGE_"):].lower(): v for k, v in env.items()
                          if k.startswith("BRIDGE_") and not k.startswith("BRIDGE_TEST_")})
    assert rebuilt == settings


def test_topic_table_copartitions_keyed_streams() -> None:
    table = topic_table(Settings(partitions=4))
    assert table["events"].partitions == table["deliveries"].partitions == 4
    assert all(table[n].compacted for n in ("partners", "subscriptions", "config"))
    assert table["deliveries.retry.1"].name == "bridge.deliveries.retry.1"
