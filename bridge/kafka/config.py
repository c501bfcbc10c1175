"""The librdkafka configuration of every client, and the start-up check of its credentials.

The one place that configures librdkafka clients (:func:`client_config`: connection and security
settings, then ``BRIDGE_KAFKA_EXTRA``, then the caller's own properties).
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from bridge.errors import KafkaUnavailable
from bridge.settings import Settings


def client_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The configuration of every Producer, Consumer and AdminClient the bridge creates."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings validator requires it
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
    if settings.kafka_ssl_key_password is not None:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    config.update(settings.kafka_extra)
    config.update(overrides)
    return config


def check_connection(settings: Settings, timeout: float = 15.0) -> None:
    """Refuse credentials or TLS settings the brokers reject, with the reason, at start-up.

    librdkafka retries a failed authentication forever in the background; without this check a
    process with a wrong password would only ever report "not ready". An unreachable broker is not
    an error here (the API answers /healthz without Kafka and clients reconnect); a refusal is.
    """
    refusals: list[str] = []
    unreachable: list[str] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in _REFUSALS:
            refusals.append(error.str())
        elif error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
            unreachable.append(error.str())

    admin = AdminClient(client_config(settings, error_cb=on_error, logger=_Quiet()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=1.0)
        except KafkaException:
            admin.poll(0.2)  # serves error_cb
            if refusals:
                raise KafkaUnavailable(_refusal(settings, refusals[0])) from None
            if unreachable:  # nothing answers: not a refusal; the caller's own retries apply
                return
            continue
        admin.poll(0)
        if refusals:
            raise KafkaUnavailable(_refusal(settings, refusals[0]))
        return


_REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED,
                       KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED})


def _refusal(settings: Settings, reason: str) -> str:
    who = (f"user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})"
           if settings.kafka_security_protocol.startswith("SASL_") else "this client")
    return (f"Kafka at {settings.kafka_bootstrap} ({settings.kafka_security_protocol}) refused {who}: "
            f"{reason}. Check BRIDGE_KAFKA_SASL_USERNAME / BRIDGE_KAFKA_SASL_PASSWORD and the TLS "
            "settings (BRIDGE_KAFKA_SSL_CA_FILE).")


class _Quiet:
    """The check reports the refusal itself; librdkafka's own log lines would repeat it."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None
