"""The naive bridge an integrator writes by hand: the baseline (b) of every benchmark scenario.

One Kafka consumer; for each event, for each subscribed partner, ``await client.post(...)``.
Nothing else: httpx with its defaults (5 s timeout; ``--timeout`` changes it), the consumer's defaults (auto-commit every
5 s), no retries, no per-partner isolation. It reads platform pushes (the ``OnEventNotify`` JSON
as received) from a topic and re-sends each event as its own push, as the bridge does::

    consumer = Consumer({...})
    async with httpx.AsyncClient() as client:
        while True:
            msg = consumer.poll(1.0)
            push = json.loads(msg.value())
            for event in push["params"]["events"]:
                for url in subscribers[event["eventType"]]:
                    await client.post(url, content=one_event_push(push, event))

Run: ``python -m bench.naive --bootstrap H:P --topic T --group G --subs subs.json
[--expect-events N] [--max-seconds S] [--idle-exit S] [--stats out.json]``; ``subs.json`` maps an
event type to a list of URLs. Bounded: it exits after N events, S seconds, or when idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    from confluent_kafka import Consumer

    with open(args.subs) as fh:
        subscribers = {int(k): v for k, v in json.load(fh).items()}
    config = {"bootstrap.servers": args.bootstrap, "group.id": args.group, "auto.offset.reset": "earliest"}
    if args.session_timeout_ms:
        config["session.timeout.ms"] = args.session_timeout_ms
    consumer = Consumer(config)
    consumer.subscribe([args.topic])
    stats: dict[str, Any] = {"events": 0, "posts": 0, "ok": 0, "errors": 0, "first_post": None,
                             "last_post": None, "first_error": ""}
    start = time.monotonic()
    last_message = start
    seen_any = False
    try:
        async with httpx.AsyncClient(timeout=args.timeout) as client:
            while time.monotonic() - start < args.max_seconds and stats["events"] < args.expect_events:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    if seen_any and time.monotonic() - last_message > args.idle_exit:
                        break
                    continue
                seen_any = True
                last_message = time.monotonic()
                push = json.loads(msg.value())
                params = push["params"]
                for event in params["events"]:
                    body = json.dumps({"method": push["method"], "params": {**params, "events": [event]}},
                                      ensure_ascii=False, separators=(",", ":")).encode()
                    for url in subscribers.get(int(event["eventType"]), []):
                        stats["posts"] += 1
                        if stats["first_post"] is None:
                            stats["first_post"] = time.time()
                        try:
                            response = await client.post(url, content=body,
                                                         headers={"Content-Type": "application/json"})
                            if 200 <= response.status_code < 300:
                                stats["ok"] += 1
                            else:
                                stats["errors"] += 1
                        except httpx.HTTPError as exc:
                            stats["errors"] += 1
                            stats["first_error"] = stats["first_error"] or f"{type(exc).__name__}: {exc}"
                        stats["last_post"] = time.time()
                    stats["events"] += 1
                    if time.monotonic() - start >= args.max_seconds:
                        break
    finally:
        consumer.close()
    stats["seconds"] = time.monotonic() - start
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.naive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--subs", required=True, help="JSON: {eventType: [url, ...]}")
    parser.add_argument("--expect-events", type=int, default=10**12)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--idle-exit", type=float, default=10.0)
    parser.add_argument("--stats", help="write the counts here as JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="httpx timeout (default: httpx's 5 s)")
    parser.add_argument("--session-timeout-ms", type=int, default=0,
                        help="consumer session timeout (default: librdkafka's 45 s)")
    args = parser.parse_args(argv)
    stats = asyncio.run(run(args))
    if args.stats:
        with open(args.stats, "w") as fh:
            json.dump(stats, fh)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
