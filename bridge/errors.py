"""Errors of the bridge, classified once.

Hierarchy::

    BridgeError                   base of every error the bridge raises on purpose
    ├── ConfigError               settings or environment unusable (missing secret, bad value)
    ├── LocalKafkaError           the local development broker cannot be fetched or started
    ├── TopicError                topics missing, or existing with the wrong partition count
    ├── KafkaUnavailable          the broker did not acknowledge in time  (retriable)
    ├── InvalidInput              a request or record is malformed; names the field
    │   └── RecordTooLarge        a record exceeds what Kafka accepts (permanent)
    ├── AuthError                 a signed or bearer request failed authentication
    └── NotFound                  a named partner, subscription or record does not exist

``retriable`` tells callers whether trying the same thing later may succeed; policies read the
attribute, never the message text.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    retriable: bool = False


class ConfigError(BridgeError):
    """Settings or environment are unusable."""


class LocalKafkaError(BridgeError):
    """The local development broker cannot be fetched, started or stopped."""


class TopicError(BridgeError):
    """Topics are missing or exist with a configuration the bridge cannot use."""


class KafkaUnavailable(BridgeError):
    """Kafka did not acknowledge a write in time."""

    retriable = True


class InvalidInput(BridgeError):
    """A request or record is malformed."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RecordTooLarge(InvalidInput):
    """A record is larger than the broker accepts; retrying cannot help."""


class AuthError(BridgeError):
    """Authentication failed; ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(BridgeError):
    """A named thing does not exist."""
