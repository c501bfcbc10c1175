"""The one settings tree. Only this module reads the environment.

Every variable is ``BRIDGE_<FIELD>`` (upper case), e.g. ``BRIDGE_KAFKA_BOOTSTRAP``. Lists are
comma-separated (``BRIDGE_PUSH_STATUSES=0,1,2``). Secrets are ``SecretStr`` so they never print.
Call :func:`get_settings` where settings are needed; nothing holds an import-time global.
"""

from __future__ import annotations

import ipaddress
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.errors import ConfigError

Mode = Literal["prod", "dev"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

#: Event statuses (architecture B6): 0 instant, 1 start, 2 stop, 3 pulse, 4 linkage update,
#: 5 asynchronous picture, 8 remark.
KNOWN_STATUSES = frozenset({0, 1, 2, 3, 4, 5, 8})


def _split_csv(value: Any) -> Any:
    """Accept ``"0,1,2"`` (how people write it in a shell) as well as a real list."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Configuration of every bridge process (api, worker, CLI)."""

    # env_ignore_empty: `X=` (as compose and Helm write an unset optional value) means unset.
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore", frozen=True, env_ignore_empty=True)

    #: ``dev`` is set only by ``event-bridge dev``: it allows generated development secrets.
    mode: Mode = "prod"

    # --- Kafka -------------------------------------------------------------------------------
    #: Comma-separated ``host:port`` list of brokers.
    kafka_bootstrap: str = "localhost:9092"
    #: Prefix of every topic name the bridge owns.
    topic_prefix: str = "bridge."
    #: Partitions of the keyed stream topics (events, deliveries, retries); fixed at creation.
    partitions: int = Field(default=6, ge=1, le=1000)
    #: Replication factor used when the bridge creates its topics (1 for a single local broker).
    replication_factor: int = Field(default=1, ge=1)
    #: How long ``bridge.events`` keeps events (the replay horizon), in hours.
    events_retention_hours: int = Field(default=7 * 24, ge=1)
    #: Prefix of the bridge's consumer groups and transactional ids (``<app_id>-route``, ...).
    app_id: str = "event-bridge"
    #: How every client reaches the brokers (librdkafka ``security.protocol``).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    #: SASL mechanism, required with SASL_PLAINTEXT and SASL_SSL.
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    #: PEM file of the CA(s) that signed the brokers' certificates (default: the system's).
    kafka_ssl_ca_file: Path | None = None
    #: PEM client certificate and key, for brokers that require mutual TLS.
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    #: Any other librdkafka property, as a JSON object of strings, e.g.
    #: ``BRIDGE_KAFKA_EXTRA='{"client.rack": "eu-1a", "ssl.endpoint.identification.algorithm": "none"}'``.
    #: Applied last, to every client; kept out of repr because it may hold secrets.
    kafka_extra: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict, repr=False)

    # --- Local broker (``event-bridge kafka``) -------------------------------------------------
    #: Where the fetched broker classpath and local broker data live (outside the repository).
    cache_dir: Path = Path.home() / ".cache" / "event-bridge"
    #: Port of the local development broker.
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    #: Heap of the local development broker.
    kafka_heap: str = "512m"

    # --- HTTP --------------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    #: Largest request body accepted, in bytes (larger answers 413).
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    #: Largest record the bridge writes to Kafka (key + value + headers), in bytes: librdkafka's
    #: ``message.max.bytes`` default, below the broker's 1,048,588. Ingest refuses an event whose
    #: record, once routed and dead-lettered, could outgrow it; the stages check every record they
    #: derive against it. Raise it only together with the topics' ``max.message.bytes``.
    max_record_bytes: int = Field(default=1_000_000, ge=65_536)

    #: Path the platform POSTs ``OnEventNotify`` to.
    ingest_path: str = "/eventRcv"
    #: Optional shared token the platform must send in ``X-Bridge-Ingest-Token``.
    ingest_token: SecretStr | None = None
    #: Optional source networks allowed to POST to the ingest path (empty: any).
    ingest_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- Secrets (required outside dev) ------------------------------------------------------
    admin_token: SecretStr | None = None
    #: Fernet key (urlsafe base64, 32 bytes) encrypting partner secrets at rest in Kafka.
    secret_key: SecretStr | None = None

    # --- Behaviour -----------------------------------------------------------------------------
    #: Statuses pushed to partners unless a partner overrides it (B6).
    push_statuses: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [0, 1, 2])
    #: Extra CIDRs allowed as callback destinations (e.g. ``127.0.0.0/8`` for local tests).
    dest_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Allow private (RFC 1918 / ULA) callback destinations; partners commonly use them.
    dest_allow_private: bool = True
    #: After ``rotate-secret`` the previous appSecret stays valid this long, in hours.
    secret_grace_hours: float = Field(default=24.0, ge=0)
    #: Accepted distance of ``x-ca-timestamp`` from the server clock, in seconds.
    signature_window_s: int = Field(default=900, ge=1)
    #: Where the api remembers Artemis nonces: ``kafka`` shares them between every api replica
    #: (bridge.nonces), ``memory`` keeps them in one process (a single api only).
    nonce_store: Literal["kafka", "memory"] = "kafka"
    #: Most nonces an api remembers; beyond it the oldest are forgotten before their window ends.
    nonce_max_entries: int = Field(default=100_000, ge=1000)
    #: A running replay whose api has not reported progress for this long is taken over by
    #: another api (or by the restarted one), from its last recorded position, in seconds.
    replay_takeover_s: float = Field(default=15.0, gt=0)
    #: Confluent Schema Registry for the analytics feed (Confluent wire format); unset: schemaless
    #: Avro with the schema fingerprint in the ``bridge-schema`` header.
    schema_registry_url: str | None = None

    # --- Correlation ---------------------------------------------------------------------------
    #: How long the state of one eventId is kept after its last report, in hours.
    correlation_ttl_hours: float = Field(default=24.0, gt=0)
    #: Most eventIds a worker keeps state for; the oldest are released beyond it.
    correlation_max_entries: int = Field(default=100_000, ge=10)
    #: How often held events and TTLs are checked, in seconds.
    correlation_tick_s: float = Field(default=1.0, gt=0)
    #: Kafka transaction timeout of the routing and analytics loops, in seconds: how long an
    #: open transaction of a crashed worker may hold back read_committed readers.
    transaction_timeout_s: float = Field(default=10.0, ge=1, le=900)
    #: A stable name for this worker process (e.g. the pod name); makes its transactional ids
    #: stable, so a restarted worker aborts its predecessor's open transaction at once.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")

    # --- Delivery ------------------------------------------------------------------------------
    #: Seconds before each retry; its length is the number of retry tiers (one topic each).
    retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5, 30, 120, 600, 3600, 3 * 3600, 6 * 3600, 12 * 3600])
    #: Random spread of each retry delay (0.2 = ±20 %).
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    #: Least wait after a 429/503, whatever its Retry-After says, in seconds.
    retry_after_floor_s: float = Field(default=5.0, ge=0)
    #: Consecutive failures that open a destination's circuit breaker (high enough that an endpoint
    #: failing half the time keeps getting traffic; a dead one trips it quickly under load).
    breaker_failures: int = Field(default=20, ge=1)
    #: How long an open breaker waits before letting one probe through, in seconds.
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    #: CA bundle for https destinations (default: certifi's).
    ca_bundle: Path | None = None
    #: Pushes waiting for one partner's in-flight slots before new ones may spill to the first
    #: retry tier (they do when, at the partner's recent pace, they would wait longer than its
    #: delay; always beyond 10x this).
    partner_backlog: int = Field(default=200, ge=1)
    #: A worker taking over a partition skips live tasks whose delivery id was delivered within
    #: this many seconds (read from bridge.outcomes); 0 turns it off.
    redelivery_window_s: float = Field(default=600.0, ge=0)
    #: Port of the worker process's Prometheus endpoint, all its stages' metrics (0: none).
    worker_metrics_port: int = Field(default=9108, ge=0, le=65535)

    #: One log line per HTTP request (off in `event-bridge dev --demo`, whose screen is a live table).
    access_log: bool = True
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("push_statuses", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        value = _split_csv(value)
        bad = [v for v in value if int(v) not in KNOWN_STATUSES]
        if bad:
            raise ValueError(f"unknown event status {bad}; known: {sorted(KNOWN_STATUSES)}")
        return value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        value = _split_csv(value)
        if not value or any(float(v) <= 0 for v in value):
            raise ValueError("retry_schedule must be a non-empty list of positive seconds")
        return value

    @field_validator("dest_allow", "ingest_allow", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        value = _split_csv(value)
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError naming the bad CIDR
        return value

    @field_validator("kafka_extra", mode="before")
    @classmethod
    def _extra(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as exc:
                raise ValueError(f"BRIDGE_KAFKA_EXTRA must be a JSON object of librdkafka properties: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("BRIDGE_KAFKA_EXTRA must be a JSON object of librdkafka properties")
        bad = [k for k, v in value.items() if not isinstance(v, (str, int, float, bool))]
        if bad:
            raise ValueError(f"BRIDGE_KAFKA_EXTRA values must be strings or numbers: {sorted(bad)}")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            missing = [f"BRIDGE_{name.upper()}" for name in
                       ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                       if not getattr(self, name)]
            if missing:
                raise ValueError(f"BRIDGE_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}")
        uses_tls = protocol in ("SSL", "SASL_SSL")
        files = {"kafka_ssl_ca_file": self.kafka_ssl_ca_file, "kafka_ssl_cert_file": self.kafka_ssl_cert_file,
                 "kafka_ssl_key_file": self.kafka_ssl_key_file}
        for name, path in files.items():
            if path is None:
                continue
            if not uses_tls:
                raise ValueError(f"BRIDGE_{name.upper()} is set but BRIDGE_KAFKA_SECURITY_PROTOCOL="
                                 f"{protocol} does not use TLS (SSL or SASL_SSL)")
            if not path.is_file():
                raise ValueError(f"BRIDGE_{name.upper()}={path}: no such file")
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("BRIDGE_KAFKA_SSL_CERT_FILE and BRIDGE_KAFKA_SSL_KEY_FILE go together (mutual TLS)")
        return self

    def require_secrets(self) -> None:
        """Refuse to start a server without its secrets, except under ``event-bridge dev``."""
        if self.mode == "dev":
            return
        missing = [
            f"BRIDGE_{name.upper()}"
            for name in ("admin_token", "secret_key")
            if getattr(self, name) is None or not getattr(self, name).get_secret_value()
        ]
        if missing:
            raise ConfigError(
                f"{', '.join(missing)} must be set (generate a secret key with "
                "`event-bridge secret-key`); only `event-bridge dev` runs without them"
            )


def child_env(settings: Settings) -> dict[str, str]:
    """The environment for a child process that must see exactly ``settings``."""
    env = dict(os.environ)
    for name, value in settings:
        if value is None:
            env.pop(f"BRIDGE_{name.upper()}", None)
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, dict):
            value = json.dumps(value)
        env[f"BRIDGE_{name.upper()}"] = str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
