"""Scenario 2 — end-to-end latency (platform POST to partner receipt) at fixed rates.

One partner subscribed to every type (so the numbers are the pipeline's latency, not fan-out's).
Pushes are sent open-loop at the rate (events/s; pushes carry 1-6 events as door controllers'
bursts do). Latency = receipt time at the partner - the time stamped into the event when it was
sent: the POST to ``/eventRcv`` for the bridge, the produce for (a) and (b), whose ingest is a
plain producer. Events not delivered within the drain allowance count as missing; percentiles
over fewer events than sent are marked incomplete in the report.

(a) raw pipeline: confluent-kafka produce → consume → aiohttp POST, overlapped;
(b) the naive bridge reading the records as they are produced;
(c) the bridge.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import ACS_TYPES, build_pushes, log, post_pushes, scenario_env
from bench.hops import HopTap
from bench.limits import raw_pipeline
from bench.scenarios.common import Context, bridge_profile, naive_run, ratio, start_bridge

NAME = "s2-latency"
TITLE = "2. End-to-end latency at fixed rates"
KEYS = ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")
#: POSTs in flight at once: the raw pipeline's, and the bridge's partner's ``maxInFlight``, so the
#: bridge gets the concurrency it is compared against (as in s1). With the default 16 one partner's
#: slots were delivery's bottleneck at 500/s here and tasks spilled to retry tier 1.
CONCURRENCY = 64


def _lat(stats: dict[str, Any], expected: int) -> dict[str, Any]:
    out = {k: stats.get(k) for k in KEYS}
    out.update(received=stats["received"], expected=expected, missing=max(0, expected - stats["unique"]),
               duplicates=stats["duplicates"], quantiles_ms=stats.get("quantiles_ms"))
    return out


def run(ctx: Context, rates: Sequence[int] = (100, 500, 2000), seconds: Sequence[float] = (10, 10, 5),
        partners: int = 1, drain_s: float = 30.0) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {"rates": list(rates), "seconds": list(seconds), "partners": partners,
                                     "events": [int(r * s) for r, s in zip(rates, seconds)],
                                     "drain_allowance_s": drain_s},
                           "rates": {}}
    workloads = {r: build_pushes(int(r * s), seed=11 + i) for i, (r, s) in enumerate(zip(rates, seconds))}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        for rate in rates:
            pushes = workloads[rate]
            events = sum(p.events for p in pushes)
            res: dict[str, Any] = {"events": events}
            group = f"s2-limit-{rate}"
            urls = {t: [rx.url(group, f"p{i}") for i in range(partners)] for t in ACS_TYPES}
            log(f"  (a) raw pipeline at {rate:,} events/s for {events / rate:.0f} s")
            res["limit_pipeline"] = raw_pipeline(ctx.bootstrap, pushes, urls, rate, concurrency=CONCURRENCY,
                                                 timeout_s=events / rate + drain_s)
            rx.wait_count(group + "/", events * partners, timeout=drain_s, idle=5)
            res["limit"] = _lat(rx.stats(group + "/", expect=events, partners=partners, quantiles=200)["all"],
                                events * partners)
            log(f"      p50 {res['limit']['p50_ms']} ms, p99 {res['limit']['p99_ms']} ms")

            group = f"s2-naive-{rate}"
            subs = {t: [rx.url(group, f"p{i}") for i in range(partners)] for t in ACS_TYPES}
            log(f"  (b) naive bridge at {rate:,} events/s")
            res["naive_run"] = naive_run(ctx, logs, watch, rx, group, pushes, subs,
                                         max_seconds=events / rate + drain_s, rate=rate)
            res["naive"] = _lat(rx.stats(group + "/", expect=events, partners=partners, quantiles=200)["all"],
                                events * partners)
            log(f"      p50 {res['naive']['p50_ms']} ms, p99 {res['naive']['p99_ms']} ms, "
                f"missing {res['naive']['missing']:,}")
            out["rates"][str(rate)] = res

        dests = [(f"s2-p{i}", rx.url("s2-bridge", f"p{i}")) for i in range(partners)]
        stack, info = start_bridge(ctx, logs, watch, rx, "s2", dests, ACS_TYPES,
                                   delivery={"maxInFlight": CONCURRENCY})
        out["bridge_setup"] = info
        from bridge.topics import topic_table

        table = topic_table(stack.settings)
        tap = HopTap(ctx.bootstrap, {k: table[k].name for k in ("events", "deliveries", "outcomes")}).start()
        try:
            for rate in rates:
                pushes = workloads[rate]
                res = out["rates"][str(rate)]
                events = res["events"]
                log(f"  (c) bridge at {rate:,} events/s for {events / rate:.0f} s")
                spies = (bridge_profile(ctx, stack, logs, events / rate, f"s2-{rate}") if rate in (rates[0], rates[1])
                         else [])
                tap.reset()
                worker0, api0, t_start = watch.cpu("bridge worker"), watch.cpu("bridge api"), time.monotonic()
                sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes,
                                               concurrency=64, rate=rate, label="ingest"))
                rx.wait_count("s2-bridge/", events * partners, timeout=drain_s, idle=10, label="deliveries")
                window = time.monotonic() - t_start  # sending + draining
                worker_cpu, api_cpu = watch.cpu("bridge worker") - worker0, watch.cpu("bridge api") - api0
                stats = rx.stats("s2-bridge/", expect=events, partners=partners, quantiles=200,
                                 series=int(4 * events / rate))["all"]
                res["bridge"] = _lat(stats, events * partners)
                res["bridge"]["series"] = stats.get("series")
                res["bridge"]["spikes"] = spikes(stats.get("series") or [], stats["p50_ms"])
                lag = sorted(sent.lag_ms)
                res["bridge"].update(
                    ingest_failed_pushes=sent.failed, ingest_error=sent.first_error,
                    ingest_p50_ms=_p(sorted(sent.latencies_ms), 50), ingest_p99_ms=_p(sorted(sent.latencies_ms), 99),
                    send_lag_p99_ms=_p(lag, 99), sent_late=len(lag),
                    worker_cpu_s=worker_cpu, api_cpu_s=api_cpu, window_s=window,
                    worker_cpu_pct=100 * worker_cpu / window, api_cpu_pct=100 * api_cpu / window,
                )
                for spy in spies:
                    spy.wait(60)
                res["bridge"]["hops"] = tap.summary()
                b = res["bridge"]
                log(f"      p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms, p99 {b['p99_ms']} ms, missing {b['missing']:,}; "
                    f"/eventRcv answer p50 {b['ingest_p50_ms']:.1f} ms")
                res["ratios"] = {f"{k}_bridge_over_{base}": ratio(b[k], res[base][k])
                                 for base in ("limit", "naive") for k in ("p50_ms", "p99_ms")}
                rx.reset("s2-bridge/")
        finally:
            tap.stop()
            stack.stop()
    out["rss"] = watch.report()
    return out


def spikes(series: list[list[float]], p50_ms: float | None, threshold_ms: float | None = None) -> dict[str, Any]:
    """Slices (0.25 s) whose worst latency exceeds ``threshold_ms`` (default 3× the p50), and their spacing."""
    if not series or not (p50_ms or threshold_ms):
        return {"count": 0, "mean_interval_s": None}
    limit = threshold_ms if threshold_ms is not None else 3 * (p50_ms or 0.0)
    times = [t for t, lat in series if lat > limit]
    starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > 0.6]  # merge neighbours
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    return {"count": len(starts), "mean_interval_s": sum(gaps) / len(gaps) if gaps else None,
            "threshold_ms": limit}


def _p(values: list[float], p: float) -> float | None:
    from bench.harness import pct

    return pct(values, p)
