"""(a) The limit of this machine for the same work, measured in the same run as the bridge.

- :func:`kafka_limit`: raw confluent-kafka produce (the bridge's producer settings: idempotent,
  acks=all, lz4, linger 5 ms) then consume of the same records, one per event;
- :func:`http_limit`: :func:`bench.http_clients.measure` posting the same single-event bodies to the
  same receiver at the same concurrency with aiohttp's client, httpx's default transport and httpx
  over the transport the bridge uses (httpx-aiohttp); the limit is the fastest of them;
- :func:`raw_pipeline`: for latency at a fixed rate, the least a Kafka-backed bridge must do:
  confluent-kafka produce → consume → aiohttp POST to every partner without waiting between
  posts. Nothing else (no routing table, no retries, no outcome records).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bench import http_clients
from bench.harness import EMPTY_PUSH, Push, Receiver, _produce, create_topic, kafka_config, log


def _event_records(pushes: Sequence[Push]) -> list[bytes]:
    """One record per event: a single-event push, as the bridge stores one record per event."""
    import json

    out = []
    for push in pushes:
        body = json.loads(push.stamped(0.0))
        for event in body["params"]["events"]:
            one = {"method": body["method"], "params": {**body["params"], "events": [event]}}
            out.append(json.dumps(one, ensure_ascii=False, separators=(",", ":")).encode())
    return out


def kafka_limit(bootstrap: str, pushes: Sequence[Push], partitions: int = 6,
                max_seconds: float = 60.0, min_records: int = 20_000) -> dict[str, Any]:
    """Produce then consume one record per event with confluent-kafka; records/s of each.

    The records are repeated up to ``min_records`` so that a small run still measures a rate, not
    the latency of one fetch.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    topic = f"bench.limit.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    records = _event_records(pushes)
    if len(records) < min_records:
        records = (records * (min_records // len(records) + 1))[:min_records]
    producer = Producer(kafka_config(bootstrap, **{"enable.idempotence": True, "acks": "all",
                                                    "linger.ms": 5, "compression.type": "lz4"}))
    # Not timed: metadata, the idempotent producer id, the partition leaders.
    _produce(producer, topic, b"warm-up", b"{}")
    producer.flush(30)
    t0 = time.perf_counter()
    for i, value in enumerate(records):
        _produce(producer, topic, str(i % 3).encode(), value)
    left = producer.flush(max_seconds)
    produce_s = time.perf_counter() - t0
    # assign() rather than subscribe(): no group join in the timing, only fetching.
    consumer = Consumer(kafka_config(bootstrap, **{"group.id": f"limit-{uuid.uuid4().hex}",
                                                    "enable.auto.commit": False, "fetch.wait.max.ms": 50}))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    want = len(records) - left + 1  # + the warm-up record
    got = 0
    t1 = time.perf_counter()
    first = last = t1
    while got < want and time.perf_counter() - t1 < max_seconds:
        for msg in consumer.consume(1000, 0.5):
            if msg.error() is None:
                if got == 0:
                    first = time.perf_counter()
                got += 1
                last = time.perf_counter()
    consume_s = last - first  # from the first record: fetching, not the one-off offset look-up
    consumer.close()
    return {"records": len(records), "record_bytes": sum(map(len, records)) // max(1, len(records)),
            "produce_per_s": (len(records) - left) / produce_s, "produce_s": produce_s,
            "consume_per_s": (got - 1) / consume_s if consume_s > 0 else None, "consumed": got,
            "consume_s": consume_s, "first_record_after_s": first - t1}


def http_limit(receiver: Receiver, body: bytes, concurrency: int, requests: int, group: str,
               max_seconds_per_run: float = 8.0) -> dict[str, Any]:
    """The raw async HTTP clients at ``concurrency``; ``rps`` is the fastest client's."""
    cells = http_clients.measure(
        requests=requests, concurrency=[concurrency], clients=http_clients.CLIENTS, repeats=1,
        warmup=min(200, requests // 10), max_seconds_per_run=max_seconds_per_run, budget_seconds=None,
        base_url=receiver.base, body=body, path=f"/p/{group}/limit", server_pid=receiver.pid,
        progress=lambda line: log("    " + line.strip()),
    )
    by_client = {c["client"]: {k: c.get(k) for k in ("rps_best", "p50_ms", "p99_ms", "client_cpu_pct",
                                                     "server_cpu_pct", "errors", "truncated")}
                 for c in cells if c.get("runs")}
    fastest = max(by_client, key=lambda k: by_client[k]["rps_best"] or 0) if by_client else None
    receiver.reset(group + "/")
    return {"concurrency": concurrency, "requests": requests, "body_bytes": len(body),
            "clients": by_client, "fastest": fastest,
            "rps": by_client[fastest]["rps_best"] if fastest else None}


def raw_pipeline(bootstrap: str, pushes: Sequence[Push], urls: dict[int, list[str]], rate: float | None,
                 concurrency: int, timeout_s: float) -> dict[str, Any]:
    """produce (at ``rate`` events/s) → consume → POST to each subscribed URL, all overlapped.

    The receiver measures latency from the produce time stamped into each event. Returns counts
    and the produce lag; deliveries are read from the receiver by the caller.
    """
    import json

    import aiohttp
    from confluent_kafka import Consumer, Producer

    topic = f"bench.rawpipe.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 6)
    total_events = sum(p.events for p in pushes)
    stats: dict[str, Any] = {"events": 0, "posts": 0, "errors": 0}
    consumer = Consumer(kafka_config(bootstrap, **{"group.id": f"rawpipe-{uuid.uuid4().hex}",
                                                    "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5,
                                                    "fetch.min.bytes": 1}))
    consumer.subscribe([topic])
    # Join the group before producing, so the first records are not read late.
    deadline = time.monotonic() + 20
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(0.1)

    def produce() -> None:
        producer = Producer(kafka_config(bootstrap, **{"linger.ms": 0, "acks": "all",
                                                        "enable.idempotence": True}))
        _produce(producer, topic, None, EMPTY_PUSH)  # type: ignore[arg-type]  # warm-up, not timed
        producer.flush(30)
        start = time.perf_counter()
        sent = 0
        for push in pushes:
            if rate is not None:
                delay = start + sent / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            _produce(producer, topic, None, push.stamped())  # type: ignore[arg-type]
            sent += push.events
        producer.flush(30)

    thread = threading.Thread(target=produce, daemon=True)

    def fetch() -> list[Any]:
        # consume(n, timeout) waits the whole timeout unless n records are there: wait for one
        # record only, then take what else is already fetched.
        first = consumer.poll(0.05)
        if first is None:
            return []
        return [first, *consumer.consume(499, 0)]

    async def pump() -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        headers = {"Content-Type": "application/json"}
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def post(url: str, body: bytes) -> None:
                try:
                    async with http.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                    stats["posts"] += 1
                except Exception:  # noqa: BLE001 - counted
                    stats["errors"] += 1
                finally:
                    sem.release()

            thread.start()
            end = time.monotonic() + timeout_s
            while stats["events"] < total_events and time.monotonic() < end:
                msgs = await loop.run_in_executor(None, fetch)
                for msg in msgs:
                    if msg.error():
                        continue
                    push = json.loads(msg.value())
                    params = push["params"]
                    for event in params["events"]:
                        body = json.dumps({"method": push["method"], "params": {**params, "events": [event]}},
                                          ensure_ascii=False, separators=(",", ":")).encode()
                        for url in urls.get(int(event["eventType"]), []):
                            await sem.acquire()
                            task = asyncio.create_task(post(url, body))
                            tasks.add(task)
                            task.add_done_callback(tasks.discard)
                        stats["events"] += 1
            if tasks:
                await asyncio.wait(tasks, timeout=15)

    try:
        asyncio.run(pump())
    finally:
        consumer.close()
        thread.join(30)
    return stats
