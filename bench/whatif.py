"""What-if: the bridge with the fixes the benchmarks point at, applied from outside as patches.

``python -m bench.whatif <event-bridge arguments>`` (e.g. ``worker -l warn``, ``api``) runs the
bridge's own CLI after patching, in that process only:

1. ``EventRecord.encode`` / ``DeliveryTask.encode`` without ``dataclasses.asdict``, which deep-copies
   the event body before ``json.dumps`` (same bytes: scenario 5 checks it);
2. the confluent-kafka ``Consumer`` used by the delivery loop and the registry view: ``consume(n,
   timeout)`` waits for one record (``poll(timeout)``) and then at most 5 ms for the rest of the batch
   (``consume(n - 1, 0.005)``), instead of blocking for the whole timeout unless n records are there;
   in the delivery loop ``get_watermark_offsets`` answers from the cache (its lag metric otherwise
   makes one blocking broker round trip per assigned partition every 5 s, on the consumer's only
   thread; the registry view keeps its exact look-ups, which it needs to know when it has caught up).

Nothing in ``bridge/`` is changed; this exists to measure "after" numbers for the report. The
patches are what a fix in ``bridge/`` would do, not how it should be written.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import confluent_kafka


#: How long the patched consume() waits for more records once it has one.
BATCH_WAIT_S = 0.02


class QuickConsumer(confluent_kafka.Consumer):  # type: ignore[misc]
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        first = self.poll(timeout)
        if first is None:
            return []
        if num_messages <= 1:
            return [first]
        # A few ms more for the rest of a batch: at high rates the batches stay large.
        return [first, *super().consume(num_messages - 1, BATCH_WAIT_S)]


class QuickLagConsumer(QuickConsumer):
    """For the delivery loop, whose only watermark look-ups are its lag metric."""

    def get_watermark_offsets(self, partition: Any, timeout: float | None = None, cached: bool = False) -> Any:
        return super().get_watermark_offsets(partition, cached=True)


def _fast_encode(self: Any) -> bytes:
    return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                      ensure_ascii=False, separators=(",", ":")).encode()


def apply() -> None:
    from bridge import events, registry
    from bridge.delivery import worker

    events.EventRecord.encode = _fast_encode  # type: ignore[method-assign]
    events.DeliveryTask.encode = _fast_encode  # type: ignore[method-assign]
    worker.Consumer = QuickLagConsumer  # type: ignore[misc]
    registry.Consumer = QuickConsumer  # type: ignore[misc]


def main() -> None:
    apply()
    from bridge.cli import app

    app(args=sys.argv[1:], prog_name="event-bridge")


if __name__ == "__main__":
    main()
