"""A minimal Faust app on bridge.app for the table-recovery test (run as a subprocess)."""

from __future__ import annotations

import faust

from bridge.app import create_app, run_worker
from bridge.settings import Settings, get_settings


def counter_stage(app: faust.App, settings: Settings) -> None:
    source = app.topic(settings.topic_prefix + "counter-in", key_type=str, value_type=str,
                       key_serializer="raw", value_serializer="raw")
    sink = app.topic(settings.topic_prefix + "counter-out", key_type=str, value_type=str,
                     key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", default=int)

    @app.agent(source)
    async def count(stream: faust.StreamT[str]) -> None:
        async for key, _value in stream.items():
            counts[key] += 1
            await sink.send(key=key, value=str(counts[key]))


if __name__ == "__main__":
    run_worker(create_app(get_settings(), [counter_stage]), "warn")
