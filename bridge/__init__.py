"""event-bridge: a Kafka-backed, Artemis-compatible fan-out of security-platform events."""

from bridge.errors import BridgeError

__version__ = "0.1.0"

__all__ = ["BridgeError", "__version__"]
