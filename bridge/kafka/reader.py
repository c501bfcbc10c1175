"""The topic-range reader: a partition range read once, under read_committed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from bridge.errors import KafkaUnavailable


def read_to_end(config: dict[str, Any], start: list[TopicPartition], timeout_s: float) -> Iterator[Any]:
    """The messages of ``start``'s partitions, from its offsets to each partition's end.

    End = the end when reading began: the last stable offset under read_committed (transaction
    markers are stepped over, open transactions waited for), found with ``enable.partition.eof``.
    Raises ``KafkaUnavailable`` on a consumer error, ``TimeoutError`` past ``timeout_s``.
    """
    reader = Consumer({**config, "enable.auto.commit": False, "enable.partition.eof": True,
                       "fetch.wait.max.ms": 50})
    try:
        reader.assign(start)
        pending = {(tp.topic, tp.partition) for tp in start}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {sorted(pending)} to the end took over {timeout_s:.0f} s")
            for message in reader.consume(1000, 0.5):
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
                else:
                    raise KafkaUnavailable(f"reading {message.topic()}: {error.str()}")
    finally:
        reader.close()
