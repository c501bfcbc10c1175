"""The Faust application, built from settings. Stages register their agents on it; nothing else lives here."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faust

from bridge.settings import Settings

#: A stage registers its agents and tables on the app (``routing.register``, ``delivery.register``…).
Stage = Callable[[faust.App, Settings], None]


def create_app(settings: Settings, stages: Iterable[Stage] = ()) -> faust.App:
    """A Faust app for ``settings`` with the given stages registered."""
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        # Tables are rebuilt from their changelog topics on start; Kafka is the only state store.
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Metrics and health are served by `event-bridge api`; several workers share one host.
        web_enabled=False,
        autodiscover=False,
        producer_acks=-1,
        # The stages' own consumers use 10 s sessions; Faust's default of 60 s made a worker
        # restarted after a crash wait a minute for the dead member before its tasks started.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )
    for stage in stages:
        stage(app, settings)
    return app


def run_worker(app: faust.App, loglevel: str = "info") -> None:
    """Run ``app`` as a worker in the foreground until SIGTERM/SIGINT."""
    from faust.worker import Worker

    Worker(app, loglevel=loglevel.lower()).execute_from_commandline()
