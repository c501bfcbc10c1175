"""``event-bridge export``: a time range of a topic as Avro object container files, one per hour.

The files carry their schema (``schemas/*.avsc``) in the header, so fastavro, Spark, DuckDB or any
Avro reader opens them without the bridge. ``events`` are converted from ``bridge.events`` (the
lossless source) with the analytics mapping; ``outcomes`` and ``lifecycle`` are already Avro.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from fastavro.write import Writer

from bridge import schemas
from bridge.errors import InvalidInput
from bridge.events import EventRecord
from bridge.feeds.analytics import EVENT_SCHEMA, to_analytics
from bridge.kafka.reader import TopicReader
from bridge.settings import Settings
from bridge.topics import topic_table

#: topic kind → (logical topic, schema name, decoder of a record value)
KINDS: dict[str, tuple[str, str, Callable[[bytes], dict[str, Any]]]] = {
    "events": ("events", EVENT_SCHEMA, lambda v: to_analytics(EventRecord.decode(v))),
    "outcomes": ("outcomes", "delivery_outcome", lambda v: schemas.decode("delivery_outcome", v)),
    "lifecycle": ("lifecycle", "lifecycle", lambda v: schemas.decode("lifecycle", v)),
}


def _range(reader: TopicReader, start: float, end: float | None) -> dict[int, tuple[int, int]]:
    partitions = reader.partitions()
    marks = reader.watermarks(partitions)

    def at(moment: float) -> dict[int, int]:
        # None: nothing at or after that moment in the partition: its end.
        return {p: marks[p][1] if offset is None else offset
                for p, offset in reader.offsets_at(moment, partitions).items()}

    starts = at(start)
    ends = at(end) if end is not None else {p: m[1] for p, m in marks.items()}
    return {p: (starts[p], ends[p]) for p in partitions if ends[p] > starts[p]}


def export(settings: Settings, kind: str, start: float, end: float | None, out: Path,
           progress: Callable[[int, int], None] | None = None) -> list[tuple[Path, int]]:
    """Write the files; returns each file with its record count."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown topic {kind!r}; choose one of {', '.join(KINDS)}", "topic")
    if end is not None and end <= start:
        raise InvalidInput("--to-time must be after --from-time", "to_time")
    logical, schema_name, decode = KINDS[kind]
    topic = topic_table(settings)[logical].name
    schema = schemas.load(schema_name)
    out.mkdir(parents=True, exist_ok=True)
    reader = TopicReader.of(settings, topic, "export")
    writers: dict[str, tuple[BinaryIO, Writer, list[int]]] = {}
    try:
        ranges = _range(reader, start, end)
        total = sum(e - s for s, e in ranges.values())
        done = 0
        # Partition by partition: each file keeps the records of one partition together, in log
        # order.
        for partition, (first, last) in sorted(ranges.items()):
            for message in reader.read({partition: (first, last)}, idle_s=60):
                done += 1
                if progress and done % 500 == 0:
                    progress(done, total)
                try:
                    record = decode(message.value())
                except (ValueError, TypeError, KeyError, EOFError):
                    continue
                hour = datetime.fromtimestamp(message.timestamp()[1] / 1000, timezone.utc)
                name = f"{kind}-{hour:%Y-%m-%dT%H}.avro"
                if name not in writers:
                    handle = open(out / name, "wb")  # noqa: SIM115 - closed in finally
                    writers[name] = (handle, Writer(handle, schema, codec="deflate"), [0])
                writers[name][1].write(record)
                writers[name][2][0] += 1
        if progress:
            progress(done, total)
    finally:
        reader.close()
        for handle, writer, _ in writers.values():
            writer.flush()
            handle.close()
    return [(out / name, count[0]) for name, (_, _, count) in sorted(writers.items())]
