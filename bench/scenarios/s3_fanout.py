"""Scenario 3 — fan-out: one event type, 1,000 partners subscribed to it.

(a) the raw HTTP clients at the bridge's connection limit (1,024) posting the same body, and raw
confluent-kafka produce + consume of one record per delivery (the bridge writes a delivery task and
an outcome record for each); (b) the naive bridge (1,000 sequential POSTs per event, time-boxed);
(c) the bridge: partners created through the admin API with signed Artemis subscriptions (the
time that takes is reported too), then the events POSTed to ``/eventRcv``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import build_pushes, delivery_body, log, post_pushes, scenario_env
from bench.limits import http_limit, kafka_limit
from bench.scenarios.common import Context, bridge_profile, deliveries_rate, naive_run, ratio, start_bridge

NAME = "s3-fanout"
TITLE = "3. Fan-out: one event type, 1,000 partners"
EVENT_TYPE = 196883


def run(ctx: Context, events: int, partners: int = 1000, naive_seconds: float = 20.0,
        http_requests: int = 10000, kafka_records: int = 20000) -> dict[str, Any]:
    pushes = build_pushes(events, seed=23, event_type=EVENT_TYPE)
    deliveries = events * partners
    concurrency = min(1024, partners * 16)
    out: dict[str, Any] = {"sizes": {"events": events, "partners": partners, "deliveries": deliveries,
                                     "naive_max_seconds": naive_seconds, "http_limit_requests": http_requests,
                                     "delivery_concurrency": concurrency,
                                     "kafka_limit_records": min(kafka_records, deliveries)}}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        log(f"  (a) raw HTTP clients at concurrency {concurrency}")
        out["limit_http"] = http_limit(rx, delivery_body(pushes[0]), concurrency, http_requests, "s3-limit")
        n_records = min(kafka_records, deliveries)
        log(f"  (a) raw confluent-kafka: produce + consume {n_records:,} records (one per delivery)")
        many = build_pushes(n_records, seed=24, event_type=EVENT_TYPE)
        out["limit_kafka"] = kafka_limit(ctx.bootstrap, many)

        log(f"  (b) naive bridge: {events} events x {partners:,} partners (at most {naive_seconds:.0f} s)")
        subs = {EVENT_TYPE: [rx.url("s3-naive", f"p{i}") for i in range(partners)]}
        naive = naive_run(ctx, logs, watch, rx, "s3-naive", pushes, subs, naive_seconds)
        ns = rx.stats("s3-naive/")["all"]
        naive["deliveries_per_s"] = deliveries_rate(ns)
        naive["received"] = ns["received"]
        out["naive"] = naive
        log(f"      naive: {ns['received']:,} deliveries, {naive['deliveries_per_s'] or 0:,.0f}/s")

        dests = [(f"s3-p{i}", rx.url("s3-bridge", f"p{i:04d}")) for i in range(partners)]
        stack, info = start_bridge(ctx, logs, watch, rx, "s3", dests, [EVENT_TYPE], partner_concurrency=16)
        try:
            worker0 = watch.cpu("bridge worker")
            spies = bridge_profile(ctx, stack, logs, 20)
            t0 = time.time()
            log(f"  (c) bridge: POST {events} events to /eventRcv")
            sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, 8))
            n, complete = rx.wait_count("s3-bridge/", deliveries, timeout=max(90.0, deliveries / 150), idle=30,
                                        label="deliveries")
            stats = rx.stats("s3-bridge/", expect=events, partners=partners, quantiles=200)["all"]
            worker_cpu = watch.cpu("bridge worker") - worker0
            for spy in spies:
                spy.wait(60)
        finally:
            stack.stop()
        out["bridge"] = {
            **info, "ingest_failed_pushes": sent.failed, "deliveries": stats["received"], "complete": complete,
            "missing": stats["missing"], "duplicates": stats["duplicates"],
            "deliveries_per_s": deliveries_rate(stats, t0),
            "fanout_s": stats["last"] - t0 if stats["last"] else None,
            "e2e_ms": {k: stats[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
            "worker_cpu_s": worker_cpu,
            "worker_cpu_ms_per_delivery": worker_cpu / stats["received"] * 1e3 if stats["received"] else None,
        }
        b = out["bridge"]
        log(f"      bridge: {b['deliveries']:,}/{deliveries:,} deliveries, {b['deliveries_per_s'] or 0:,.0f}/s, "
            f"p99 {b['e2e_ms']['p99_ms']} ms")
    out["rss"] = watch.report()
    out["ratios"] = {
        "deliveries_bridge_over_http_limit": ratio(b["deliveries_per_s"], out["limit_http"]["rps"]),
        "deliveries_bridge_over_naive": ratio(b["deliveries_per_s"], naive["deliveries_per_s"]),
    }
    return out
