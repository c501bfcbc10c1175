"""Routing's Kafka transaction alone: its phases and when its records become visible.

``python -m bench.txprobe BOOTSTRAP RATE SECONDS`` (a measurement: run it under
``flock /work/bench.lock`` on a shared machine) creates throw-away topics (deleted at the end), produces RATE
records/s to the first (idempotent, ``linger.ms`` 5, as ingest does) and runs the real
``TransactionalLoop`` over them with a pass-through handler, as routing does over
``bridge.events``. A ``read_committed`` tap on the output topic stamps each record as it becomes
visible. Printed: visible p50/p99 (sent → tap), the loop's produce (sent → loop's produce call),
commit returned → visible, and each phase of the transactions (begin, produce calls,
``send_offsets_to_transaction``, ``commit_transaction``).

Variants, to tell the broker's round trips from what the process around the loop costs:

- ``--hog N``: N Python threads spinning in the same process (another stage holding the GIL);
- ``--second-loop``: an analytics-like loop (batch 5,000, 0.25 s apart) on the same input;
- ``--alo``: no transaction (at-least-once: idempotent producer, offsets committed after the
  records are acknowledged), what routing would cost with exactly-once moved to delivery;
- ``--direct``: ``send_offsets_to_transaction`` called without the loop's watchdog thread;
- ``--routing-like``: each record also writes a changelog record on its source partition and a
  record keyed by a fresh id to a third topic, as routing writes its correlation state and the
  event's lifecycle beside each task (more partitions in each transaction);
- ``--producer k=v;k=v`` / ``--consumer k=v;k=v``: overrides of the loop's clients.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr

import bridge.runtime.txloop as txloop
from bridge.runtime.txloop import Out, TransactionalLoop
from bridge.settings import Settings

PHASES = ("begin", "produce", "offsets", "commit", "txn")


class Timed:
    """The loop's transactional producer, timing each call of a transaction."""

    def __init__(self, producer: Producer, times: dict[str, list[float]], ends: list[float]) -> None:
        self.p, self.times, self.ends = producer, times, ends
        self.t0 = self.tp = 0.0

    def begin_transaction(self) -> None:
        self.t0 = time.perf_counter()
        self.p.begin_transaction()
        self.tp = time.perf_counter()
        self.times["begin"].append(self.tp - self.t0)

    def send_offsets_to_transaction(self, *args: Any) -> None:
        t = time.perf_counter()
        self.times["produce"].append(t - self.tp)
        self.p.send_offsets_to_transaction(*args)
        self.times["offsets"].append(time.perf_counter() - t)

    def commit_transaction(self, *args: Any) -> None:
        t = time.perf_counter()
        self.p.commit_transaction(*args)
        end = time.perf_counter()
        self.times["commit"].append(end - t)
        self.times["txn"].append(end - self.t0)
        self.ends.append(time.time())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.p, name)


class Passthrough:
    changelog = None

    def __init__(self, topic: str, extra: str | None = None) -> None:
        self.topic = topic
        self.extra = extra

    def restore(self, partition: int, entries: dict[bytes, bytes]) -> None:
        pass

    def revoke(self, partition: int) -> None:
        pass

    def process(self, message: Any) -> list[Out]:
        out = [Out(self.topic, message.key(), message.value())]
        if self.extra:
            out += [Out(self.extra, message.key(), b"{}", partition=message.partition()),
                    Out(self.extra, uuid.uuid4().bytes, b"{}")]
        return out

    def tick(self, now: float) -> list[Out]:
        return []


def _pairs(text: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in text.split(";") if kv)


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def _ms(values: list[float]) -> str:
    return f"{1000 * _pct(values, 50):.1f} / {1000 * _pct(values, 99):.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.txprobe", description=__doc__.split("\n\n")[0])
    ap.add_argument("bootstrap")
    ap.add_argument("rate", type=float)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--hog", type=int, default=0)
    ap.add_argument("--second-loop", action="store_true")
    ap.add_argument("--alo", action="store_true")
    ap.add_argument("--direct", action="store_true")
    ap.add_argument("--routing-like", action="store_true")
    ap.add_argument("--producer", default="")
    ap.add_argument("--consumer", default="")
    ap.add_argument("--partitions", type=int, default=6)
    a = ap.parse_args(argv)
    tag = uuid.uuid4().hex[:6]
    source, output, rejected = (f"probe.{tag}.{n}" for n in ("in", "out", "rejected"))
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for future in admin.create_topics([NewTopic(source, a.partitions, 1), NewTopic(output, a.partitions, 1),
                                       NewTopic(rejected, a.partitions, 1)]).values():
        future.result()
    settings = Settings(mode="prod", kafka_bootstrap=a.bootstrap, app_id=f"probe-{tag}",
                        topic_prefix=f"probe.{tag}.", admin_token=SecretStr("x" * 32),
                        secret_key=SecretStr("k" * 44))
    producer_overrides, consumer_overrides = _pairs(a.producer), _pairs(a.consumer)
    times: dict[str, list[float]] = {k: [] for k in PHASES}
    ends: list[float] = []
    client_config = txloop.client_config

    def config(s: Settings, **o: Any) -> dict[str, Any]:
        if "transactional.id" in o:
            o.update(producer_overrides)
        elif o.get("isolation.level") and "restore" not in str(o.get("group.id")):
            o.update(consumer_overrides)
        return client_config(s, **o)

    txloop.client_config = config  # type: ignore[assignment]
    if a.direct:
        txloop._bounded = lambda call, timeout, what: call()  # type: ignore[assignment]

    class Loop(TransactionalLoop):
        def _producer(self) -> Producer:
            return Timed(super()._producer(), times, ends)  # type: ignore[return-value]

    stop = threading.Event()
    if a.alo:
        threading.Thread(target=_at_least_once, args=(a.bootstrap, tag, source, output, times, ends, stop),
                         daemon=True).start()
    else:
        loop = Loop(settings, "route", source, Passthrough(output, rejected if a.routing_like else None))
        loop.rejected = rejected
        threading.Thread(target=loop.run, args=(stop,), daemon=True).start()
    if a.second_loop:
        other = TransactionalLoop(settings, "analytics", source, Passthrough(rejected), batch=5000,
                                  min_interval_s=0.25)
        other.rejected = rejected
        threading.Thread(target=other.run, args=(stop,), daemon=True).start()
    for _ in range(a.hog):
        threading.Thread(target=_spin, args=(stop,), daemon=True).start()

    seen: list[tuple[float, float, float, float]] = []  # visible, produced (since sent), at, produced at
    ready = threading.Event()
    threading.Thread(target=_tap, args=(a.bootstrap, tag, output, a.partitions, seen, ready, stop),
                     daemon=True).start()
    ready.wait(30)
    feeder = Producer({"bootstrap.servers": a.bootstrap, "enable.idempotence": True, "acks": "all",
                       "linger.ms": 5, "compression.type": "lz4"})
    deadline = time.time() + 60
    while time.time() < deadline and not ends:  # until the loop is assigned and has committed once
        feeder.produce(source, json.dumps({"ts": time.time(), "warm": 1}).encode())
        feeder.poll(0)
        time.sleep(0.2)
    time.sleep(1)
    for values in times.values():
        values.clear()
    ends.clear()
    count = int(a.rate * a.seconds)
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / a.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        feeder.produce(source, json.dumps({"ts": time.time(), "i": i}).encode(), key=str(i % 97).encode())
        feeder.poll(0)
    feeder.flush()
    deadline = time.time() + 10
    while time.time() < deadline and len(seen) < count:
        time.sleep(0.1)
    stop.set()
    time.sleep(0.5)
    admin.delete_topics([source, output, rejected])  # throw-away: leave the broker as it was
    after = []
    for _, _, at, produced_at in seen:
        i = bisect.bisect_left(ends, produced_at)
        if i < len(ends):
            after.append(at - ends[i])
    print(f"rate {a.rate:g}/s for {a.seconds:g} s; hog {a.hog}, second loop {a.second_loop}, "
          f"{'at-least-once' if a.alo else 'transactional'}{', direct' if a.direct else ''}"
          f"{', routing-like outputs' if a.routing_like else ''}; "
          f"producer {producer_overrides}, consumer {consumer_overrides}")
    print(f"  visible {len(seen)}/{count}: sent -> visible p50/p99 ms {_ms([s[0] for s in seen])}; "
          f"sent -> loop's produce {_ms([s[1] for s in seen])}; commit returned -> visible {_ms(after)}")
    print(f"  {len(times['txn'])} transactions")
    for phase in PHASES:
        if times[phase]:
            print(f"  {phase:8s} p50/p99 ms {_ms(times[phase])}, mean {1000 * statistics.mean(times[phase]):.1f}")


def _spin(stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1


def _at_least_once(bootstrap: str, tag: str, source: str, output: str, times: dict[str, list[float]],
                   ends: list[float], stop: threading.Event) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"alo-{tag}", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 0})
    while not stop.is_set():
        messages = [m for m in (consumer.consume(500, 0) or consumer.consume(1, 0.1)) if not m.error()]
        if not messages:
            continue
        t0 = time.perf_counter()
        for m in messages:
            producer.produce(output, m.value(), key=m.key())
        t1 = time.perf_counter()
        producer.flush(10)
        t2 = time.perf_counter()
        consumer.commit(asynchronous=True)
        times["produce"].append(t1 - t0)
        times["commit"].append(t2 - t1)
        times["txn"].append(t2 - t0)
        ends.append(time.time())


def _tap(bootstrap: str, tag: str, topic: str, partitions: int, seen: list[tuple[float, float, float, float]],
         ready: threading.Event, stop: threading.Event) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tap-{tag}", "isolation.level": "read_committed",
                         "fetch.wait.max.ms": 1, "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    ready.set()
    while not stop.is_set():
        for m in consumer.consume(100, 0) or consumer.consume(1, 0.05):
            if m.error():
                continue
            record = json.loads(m.value())
            if record.get("warm"):
                continue
            now, produced = time.time(), m.timestamp()[1] / 1000
            seen.append((now - record["ts"], produced - record["ts"], now, produced))
    consumer.close()


if __name__ == "__main__":
    main()
