"""Kafka connection and security settings -> the librdkafka configuration of every client."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bridge.kafka.config import client_config
from bridge.settings import Settings, child_env


def test_plaintext_by_default() -> None:
    config = client_config(Settings(kafka_bootstrap="k1:9092,k2:9092"), **{"group.id": "g"})
    assert config == {"bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "plaintext", "group.id": "g"}


def test_sasl_ssl_with_ca_and_mutual_tls(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-")
    settings = Settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="bridge", kafka_sasl_password=SecretStr("pw"),
        kafka_ssl_ca_file=tmp_path / "ca.pem", kafka_ssl_cert_file=tmp_path / "client.pem",
        kafka_ssl_key_file=tmp_path / "client.key", kafka_ssl_key_password=SecretStr("kpw"),
        kafka_extra={"client.rack": "eu-1a", "sasl.mechanism": "SCRAM-SHA-512"},
    )
    config = client_config(settings, **{"client.rack": "override"})
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.username"] == "bridge" and config["sasl.password"] == "pw"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"  # BRIDGE_KAFKA_EXTRA comes after the named settings
    assert config["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert config["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert config["ssl.key.location"] == str(tmp_path / "client.key") and config["ssl.key.password"] == "kpw"
    assert config["client.rack"] == "override"  # the caller's own properties come last


def test_extra_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_KAFKA_EXTRA", '{"socket.keepalive.enable": true, "fetch.max.bytes": 1048576}')
    settings = Settings()
    assert settings.kafka_extra == {"socket.keepalive.enable": "true", "fetch.max.bytes": "1048576"}
    # A child process sees the same value (JSON again, not a Python repr).
    monkeypatch.setenv("BRIDGE_KAFKA_EXTRA", child_env(settings)["BRIDGE_KAFKA_EXTRA"])
    assert Settings().kafka_extra == settings.kafka_extra


@pytest.mark.parametrize("env, message", [
    ({"BRIDGE_KAFKA_EXTRA": "client.rack=eu"}, "JSON object"),
    ({"BRIDGE_KAFKA_EXTRA": '["a"]'}, "JSON object"),
    ({"BRIDGE_KAFKA_EXTRA": '{"a": {"b": 1}}'}, "strings or numbers"),
    ({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "BRIDGE_KAFKA_SASL_MECHANISM, BRIDGE_KAFKA_SASL_USERNAME"),
    ({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "BRIDGE_KAFKA_SASL_MECHANISM": "PLAIN",
      "BRIDGE_KAFKA_SASL_USERNAME": "u"}, "needs BRIDGE_KAFKA_SASL_PASSWORD"),
    ({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "BRIDGE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl_mechanism"),
    ({"BRIDGE_KAFKA_SECURITY_PROTOCOL": "SSL", "BRIDGE_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
     "BRIDGE_KAFKA_SSL_CA_FILE=/nonexistent/ca.pem: no such file"),
    ({"BRIDGE_KAFKA_SSL_CA_FILE": "/etc/hostname"}, "does not use TLS"),
])
def test_bad_security_settings_name_the_problem(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("-")
    with pytest.raises(ValidationError, match="go together"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=tmp_path / "c.pem")


def test_secrets_stay_out_of_repr_and_str() -> None:
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                        kafka_sasl_username="u", kafka_sasl_password=SecretStr("hunter2"),
                        kafka_extra={"sasl.oauthbearer.client.secret": "s3cret"})
    for text in (repr(settings), str(settings)):
        assert "hunter2" not in text and "s3cret" not in text
