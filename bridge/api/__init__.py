"""The HTTP server: Artemis API, ingest, admin API, health and metrics, on one port."""

from bridge.api.server import create_app

__all__ = ["create_app"]
