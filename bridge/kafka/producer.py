"""The awaitable, idempotent producer (delivery reports resolve asyncio futures)."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from bridge.errors import KafkaUnavailable, RecordTooLarge
from bridge.kafka.config import client_config
from bridge.settings import Settings


class AsyncProducer:
    """An idempotent, ``acks=all`` producer whose sends can be awaited.

    librdkafka runs its own threads; a poller thread serves delivery reports so that the event
    loop never blocks, and each report resolves the future of the send that made it. The reports
    one ``poll`` serves reach the event loop together (one wake-up, not one per record: at a few
    thousand records/s the wake-ups were a visible share of the worker's profile).
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._config = client_config(
            settings,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                # The caller answers the platform; bound how long a write may hang when Kafka is down.
                "message.timeout.ms": 10_000,
                "socket.connection.setup.timeout.ms": 5_000,
                **overrides,
            }
        )
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        #: Sends that the current poll completed (or failed): (send, the first error or None).
        self._reports: list[tuple[_Sent, KafkaError | None]] = []
        self._reports_lock = threading.Lock()  # the poller and a closing flush both serve reports

    def _ensure(self) -> Producer:
        # Created on first use so that constructing the API needs no network.
        if self._producer is None:
            self._producer = Producer(self._config)
            self._poller = threading.Thread(target=self._poll, name="producer-poll", daemon=True)
            self._poller.start()
        return self._producer

    def _poll(self) -> None:
        while not self._stop.is_set():
            assert self._producer is not None
            self._producer.poll(0.1)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the reports served so far to their event loops, one call per loop."""
        with self._reports_lock:
            reports, self._reports = self._reports, []
        if not reports:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sent, KafkaError | None]]] = {}
        for report in reports:
            by_loop.setdefault(report[0].future.get_loop(), []).append(report)
        for loop, batch in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, batch)
            except RuntimeError:  # that loop is closed: nobody waits for these any more
                pass

    def _report(self, sent: _Sent, index: int, err: KafkaError | None, msg: Any) -> None:
        # On the poller thread (or the closing thread's flush), inside librdkafka's poll.
        with self._reports_lock:
            if err is None:
                sent.positions[index] = (msg.partition(), msg.offset())
                sent.pending -= 1
                if sent.pending:
                    return
            self._reports.append((sent, err))

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[int, int]:
        """Produce one record and wait for the broker's acknowledgement; returns (partition, offset)."""
        return (await self.send_many([(topic, key, value, headers)]))[0]

    async def send_many(
        self, records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]]
    ) -> list[tuple[int, int]]:
        """Produce records and return only when every one is acknowledged (else raise at the
        first refusal).

        Returns the (partition, offset) of each record, in order.
        """
        if not records:
            return []
        producer = self._ensure()
        # One future for all the records, not one each: at ingest's rate the futures, their
        # gathering and their settling were a visible share of the api's profile.
        sent = _Sent(asyncio.get_running_loop().create_future(), len(records))
        try:
            for index, (topic, key, value, headers) in enumerate(records):
                report = functools.partial(self._report, sent, index)
                while True:
                    try:
                        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)
                        break
                    except BufferError:  # local queue full: let the poller drain it
                        await asyncio.sleep(0.01)
                    except KafkaException as exc:
                        if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                            raise RecordTooLarge(
                                f"a record of {len(value)} bytes is larger than Kafka accepts", "body"
                            ) from exc
                        raise KafkaUnavailable(f"cannot produce to {topic}: {exc}") from exc
        except BaseException:
            sent.future.cancel()  # the reports of the records already produced settle nothing
            raise
        return await sent.future

    def close(self, timeout: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout)
            self._stop.set()
            if self._poller:
                self._poller.join(timeout=2)
            self._hand_over()  # what the flush served
            self._producer = None


class _Sent:
    """The records of one ``send_many``: their positions so far, and one future for them all."""

    __slots__ = ("future", "pending", "positions")

    def __init__(self, future: asyncio.Future[list[tuple[int, int]]], count: int) -> None:
        self.future = future
        self.pending = count
        self.positions: list[tuple[int, int]] = [(-1, -1)] * count


def _settle_all(reports: list[tuple[_Sent, KafkaError | None]]) -> None:
    for sent, err in reports:
        _settle(sent, err)


def _settle(sent: _Sent, err: KafkaError | None) -> None:
    future = sent.future
    if future.done():  # cancelled, or already failed by an earlier refusal
        return
    if err is None:
        future.set_result(sent.positions)
    elif err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
        future.set_exception(RecordTooLarge(f"Kafka refused the record: {err.str()}", "body"))
    else:
        future.set_exception(KafkaUnavailable(f"Kafka did not accept the record: {err.str()}"))
