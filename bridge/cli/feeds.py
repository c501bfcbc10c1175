"""``event-bridge replay`` and ``event-bridge export``: the feeds an operator starts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail
from bridge.errors import BridgeError
from bridge.settings import get_settings


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{name}: an ISO time, e.g. 2026-11-29T08:00 or 2026-11-29T08:00+08:00") from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


@app.command()
def replay(
    partner: Annotated[str, typer.Option("--partner", help="Partner id.")],
    from_time: Annotated[str | None, typer.Option(help="Start (ISO time).")] = None,
    from_offset: Annotated[list[str] | None, typer.Option(help="PARTITION:OFFSET, repeatable.")] = None,
    to_time: Annotated[str | None, typer.Option(help="End (ISO time; default: now).")] = None,
    event_types: Annotated[str | None, typer.Option(help="Only these types, comma-separated.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count per event type; send nothing.")] = False,
    rate: Annotated[float | None, typer.Option(help="Tasks per second (default: from the partner's in-flight limit).")] = None,
) -> None:
    """Re-deliver one partner's events from a point in the log (same delivery ids, marked replay)."""
    import asyncio
    import uuid

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bridge.feeds import replay as rp
    from bridge.kafka.producer import AsyncProducer
    from bridge.registry.view import RegistryView

    settings = get_settings()
    offsets = None
    if from_offset:
        try:
            offsets = {int(p): int(o) for p, o in (item.split(":", 1) for item in from_offset)}
        except ValueError:
            raise typer.BadParameter("--from-offset is PARTITION:OFFSET, e.g. 0:1200") from None
    types = frozenset(int(t) for t in event_types.split(",")) if event_types else None
    request = rp.ReplayRequest(partner, _time(from_time, "--from-time"), offsets,
                               _time(to_time, "--to-time"), types, dry_run, rate)

    async def main() -> Any:
        view = RegistryView(settings)
        producer = AsyncProducer(settings)
        try:
            await asyncio.to_thread(view.start, 20.0)
            if view.partner(partner) is None:
                raise fail(f"no partner {partner!r} (see `event-bridge partner list`)")
            the_plan = await asyncio.to_thread(rp.plan, settings, request)
            progress = rp.ReplayProgress(uuid.uuid4().hex[:12], partner, dry_run, the_plan.total)
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), "enqueued {task.fields[enqueued]}",
                          TimeRemainingColumn(), console=console) as bar:
                job = bar.add_task("counting" if dry_run else "replaying", total=the_plan.total,
                                   enqueued=0)
                work = asyncio.create_task(rp.run(settings, view, producer, request, progress, the_plan))
                while not work.done():
                    bar.update(job, completed=progress.scanned, enqueued=progress.enqueued)
                    await asyncio.sleep(0.3)
                bar.update(job, completed=progress.scanned, enqueued=progress.enqueued)
                return await work
        finally:
            view.stop()
            producer.close()

    try:
        result = asyncio.run(main())
    except BridgeError as exc:
        raise fail(exc) from None
    table = Table("eventType", "deliveries" if not dry_run else "would send")
    for event_type, count in sorted(result.by_event_type.items()):
        table.add_row(str(event_type), str(count))
    console.print(table)
    verb = "would enqueue" if dry_run else "enqueued"
    console.print(f"scanned {result.scanned} events; {verb} {sum(result.by_event_type.values())} "
                  f"deliveries for {partner} ({result.state})")


@app.command()
def export(
    topic: Annotated[str, typer.Option(help="events, outcomes or lifecycle.")],
    from_time: Annotated[str, typer.Option(help="Start (ISO time).")],
    out: Annotated[str, typer.Option(help="Directory for the Avro files.")],
    to_time: Annotated[str | None, typer.Option(help="End (ISO time; default: now).")] = None,
) -> None:
    """Write Avro object container files, one per hour, readable by any Avro reader."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bridge.feeds import export as exporter

    settings = get_settings()
    start = _time(from_time, "--from-time")
    assert start is not None
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        job = bar.add_task(f"exporting {topic}", total=None)
        try:
            files = exporter.export(settings, topic, start, _time(to_time, "--to-time"), Path(out),
                                    lambda done, total: bar.update(job, completed=done, total=total))
        except BridgeError as exc:
            raise fail(exc) from None
    table = Table("file", "records")
    for path, count in files:
        table.add_row(str(path), str(count))
    console.print(table)
