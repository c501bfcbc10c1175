"""The seams of dispatch: where tasks come from, where its records go, who the partners are.

The svix pattern: the queue behind an interface. ``consumer.DeliveryConsumer`` reads the task
topics from Kafka and commits what is settled; the shared ``kafka.producer.AsyncProducer`` is the
sink, the worker's ``registry.view.RegistryView`` knows the partners. Tests drive
``dispatch.Dispatcher`` with in-memory ones (``tests/fixtures/delivery.py``).

The contract a source keeps: every task it hands out stays unsettled (its commit point does not
pass it) until dispatch calls ``settled`` for it, and dispatch calls ``settled`` only after the
task's outcome and successor (next retry tier or dead letter) were acknowledged by the sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from bridge.events import DeliveryTask
from bridge.registry.models import Partner

#: A topic partition: ``(topic, partition)``.
Partition = tuple[str, int]

#: One record to write: ``(topic, key, value, headers)``.
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]


class TaskRef(NamedTuple):
    """Where a task was read; settling it lets the source's commit point move past it."""

    topic: str
    partition: int
    offset: int

    @property
    def partition_key(self) -> Partition:
        return (self.topic, self.partition)


@dataclass(frozen=True)
class Undecodable:
    """A record that is not a delivery task: dead-lettered as it is, then settled."""

    value: bytes
    reason: str


@dataclass
class Polled:
    """What one ``poll`` brought."""

    #: Tasks read, each partition's in its order.
    tasks: list[tuple[TaskRef, DeliveryTask | Undecodable]] = field(default_factory=list)
    #: Partitions taken away since the previous poll: their unsettled tasks are the next owner's,
    #: so dispatch drops what it holds of them (tasks waiting for their ``not_before``).
    revoked: list[Partition] = field(default_factory=list)


class TaskSource(Protocol):
    async def poll(self) -> Polled:
        """What is there now, else wait briefly (about 100 ms) for the first task."""
        ...

    def settled(self, ref: TaskRef) -> None:
        """The task at ``ref`` is done (delivered, or its successor written): it may be committed.

        A ref of a partition no longer held is ignored (the new owner redoes the task).
        """
        ...


class RecordSink(Protocol):
    async def send_many(self, records: list[Record]) -> object:
        """Write ``records`` and return only when every one is acknowledged, else raise a
        ``BridgeError`` (``retriable`` when writing again may succeed)."""
        ...


class Partners(Protocol):
    def partner(self, partner_id: str) -> Partner | None:
        """The partner as it is now; None once deleted."""
        ...
