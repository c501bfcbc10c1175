"""Scenario 1 — throughput: N events, 10 partners each subscribed to every type, receivers answer at once.

(a) raw confluent-kafka produce + consume of one record per event; the raw async HTTP clients at
the bridge's concurrency (10 partners × maxInFlight 16 = 160); (b) the naive bridge flat out over
the same events (time-boxed); (c) the bridge: POST the pushes to ``/eventRcv`` (32 concurrent
requests), wait until every partner has every event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import ACS_TYPES, build_pushes, delivery_body, log, post_pushes, scenario_env
from bench.limits import http_limit, kafka_limit
from bench.scenarios.common import Context, bridge_profile, deliveries_rate, naive_run, ratio, start_bridge

NAME = "s1-throughput"
TITLE = "1. Throughput"


def run(ctx: Context, events: int, partners: int = 10, naive_seconds: float = 20.0,
        http_requests: int = 6000, ingest_concurrency: int = 32) -> dict[str, Any]:
    pushes = build_pushes(events)
    deliveries = events * partners
    concurrency = min(1024, partners * 16)
    out: dict[str, Any] = {"sizes": {"events": events, "pushes": len(pushes), "partners": partners,
                                     "deliveries": deliveries, "naive_max_seconds": naive_seconds,
                                     "http_limit_requests": http_requests,
                                     "ingest_concurrency": ingest_concurrency,
                                     "delivery_concurrency": concurrency}}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        log("  (a) raw confluent-kafka: produce + consume the same records (one per event)")
        out["limit_kafka"] = kafka_limit(ctx.bootstrap, pushes)
        log(f"      produce {out['limit_kafka']['produce_per_s']:,.0f}/s, "
            f"consume {out['limit_kafka']['consume_per_s'] or 0:,.0f}/s")
        log(f"  (a) raw HTTP clients at concurrency {concurrency}")
        out["limit_http"] = http_limit(rx, delivery_body(pushes[0]), concurrency, http_requests, "s1-limit")

        log(f"  (b) naive bridge over the same {events:,} events (at most {naive_seconds:.0f} s)")
        subs = {t: [rx.url("s1-naive", f"p{i}") for i in range(partners)] for t in ACS_TYPES}
        naive = naive_run(ctx, logs, watch, rx, "s1-naive", pushes, subs, naive_seconds)
        ns = rx.stats("s1-naive/")["all"]
        naive["deliveries_per_s"] = deliveries_rate(ns)
        naive["events_per_s"] = (naive["naive"].get("events", 0) / naive["naive"]["seconds"]
                                 if naive["naive"].get("seconds") else None)
        naive["received"] = ns["received"]
        naive["complete"] = ns["received"] >= deliveries
        out["naive"] = naive
        log(f"      naive: {ns['received']:,} deliveries, {naive['deliveries_per_s'] or 0:,.0f}/s")

        dests = [(f"s1-p{i}", rx.url("s1-bridge", f"p{i}")) for i in range(partners)]
        stack, info = start_bridge(ctx, logs, watch, rx, "s1", dests, ACS_TYPES)
        try:
            worker0, api0 = watch.cpu("bridge worker"), watch.cpu("bridge api")
            spies = bridge_profile(ctx, stack, logs, 25)
            t0 = time.time()
            log(f"  (c) bridge: POST {len(pushes):,} pushes ({events:,} events) to /eventRcv")
            sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes,
                                           ingest_concurrency, label="ingest"))
            api_cpu = watch.cpu("bridge api") - api0
            log(f"      ingest: {sent.events:,} events in {sent.seconds:.1f} s "
                f"({sent.events / sent.seconds:,.0f} events/s), failed pushes {sent.failed}")
            n, complete = rx.wait_count("s1-bridge/", deliveries, timeout=max(90.0, deliveries / 200),
                                        idle=30, label="deliveries")
            stats = rx.stats("s1-bridge/", expect=events, partners=partners, quantiles=200)["all"]
            worker_cpu = watch.cpu("bridge worker") - worker0
            for spy in spies:
                spy.wait(60)
        finally:
            stack.stop()
        out["bridge"] = {
            **info,
            "ingest_events": sent.events, "ingest_failed_pushes": sent.failed, "ingest_error": sent.first_error,
            "ingest_s": sent.seconds, "ingest_events_per_s": sent.events / sent.seconds if sent.seconds else None,
            "deliveries": stats["received"], "complete": complete, "missing": stats["missing"],
            "duplicates": stats["duplicates"], "deliveries_s": stats["last"] - t0 if stats["last"] else None,
            "deliveries_per_s": deliveries_rate(stats, t0),
            "e2e_ms": {k: stats[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")},
            "worker_cpu_s": worker_cpu, "api_cpu_s": api_cpu,
            "worker_cpu_ms_per_delivery": worker_cpu / stats["received"] * 1e3 if stats["received"] else None,
            "api_cpu_ms_per_event": api_cpu / sent.events * 1e3 if sent.events else None,
        }
        b = out["bridge"]
        log(f"      bridge: {b['deliveries']:,}/{deliveries:,} deliveries, {b['deliveries_per_s'] or 0:,.0f}/s; "
            f"worker CPU {worker_cpu:.1f} s ({b['worker_cpu_ms_per_delivery'] or 0:.2f} ms/delivery)")
        out["batched"] = _batched(ctx, logs, watch, rx, pushes, partners, ingest_concurrency)
    out["rss"] = watch.report()
    out["ratios"] = {
        "batched_events_over_http_limit": ratio((out["batched"] or {}).get("events_per_s"),
                                                out["limit_http"]["rps"]),
        "deliveries_bridge_over_http_limit": ratio(b["deliveries_per_s"], out["limit_http"]["rps"]),
        "deliveries_bridge_over_naive": ratio(b["deliveries_per_s"], naive["deliveries_per_s"]),
        "ingest_bridge_over_kafka_produce": ratio(b["ingest_events_per_s"], out["limit_kafka"]["produce_per_s"]),
    }
    return out


def _batched(ctx: Context, logs: Any, watch: Any, rx: Any, pushes: Any, partners: int,
             ingest_concurrency: int, max_batch: int = 50) -> dict[str, Any] | None:
    """(d) the same events with every partner on ``maxBatch`` 50: events delivered/s and pushes/s.

    The worker is stopped while the pushes are ingested and started again after, so that the
    tasks wait for the partners' slots and full batches form: the rate of a partner's backlog
    draining with 50 events per push (measured from the first receipt to the last).
    """
    events = sum(p.events for p in pushes)
    dests = [(f"s1b-p{i}", rx.url("s1-batched", f"p{i}")) for i in range(partners)]
    stack, info = start_bridge(ctx, logs, watch, rx, "s1b", dests, ACS_TYPES, delivery={"maxBatch": max_batch})
    try:
        stack.stop_worker()
        log(f"  (d) bridge, maxBatch {max_batch}: POST {len(pushes):,} pushes ({events:,} events) to /eventRcv "
            "with the worker stopped, then start it")
        asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, ingest_concurrency, label="ingest"))
        rx.reset("s1-batched/")  # the warm-up's receipts
        stack.start_worker()
        worker0 = watch.cpu("bridge worker")
        rx.wait_count("s1-batched/", 1, timeout=60, idle=30)
        deadline = time.monotonic() + max(90.0, events * partners / 500)
        while time.monotonic() < deadline:
            stats = rx.stats("s1-batched/", expect=events, partners=partners)["all"]
            if not stats["missing"]:
                break
            time.sleep(1.0)
        stats = rx.stats("s1-batched/", expect=events, partners=partners)["all"]
        worker_cpu = watch.cpu("bridge worker") - worker0
    finally:
        stack.stop()
    seconds = stats["last"] - stats["first"] if stats["last"] and stats["last"] > stats["first"] else None
    delivered = events * partners - (stats["missing"] or 0)
    out = {**info, "max_batch": max_batch, "events_delivered": delivered, "pushes": stats["received"],
           "missing": stats["missing"], "duplicates": stats["duplicates"], "seconds": seconds,
           "events_per_s": delivered / seconds if seconds else None,
           "pushes_per_s": stats["received"] / seconds if seconds else None,
           "events_per_push": delivered / stats["received"] if stats["received"] else None,
           "worker_cpu_s": worker_cpu,
           "worker_cpu_ms_per_event": worker_cpu / delivered * 1e3 if delivered else None}
    log(f"      batched: {delivered:,} events in {stats['received']:,} pushes, "
        f"{out['events_per_s'] or 0:,.0f} events/s, missing {stats['missing']:,}")
    return out
