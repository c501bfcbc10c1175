"""Scenario 4 — isolation: 20 partners, one of them slow, against the same run without it.

Three runs of the same fixed-rate traffic (every partner subscribed to every type):

- ``baseline``: 20 healthy partners;
- ``slow``: 19 healthy + one answering after 10 s. The bridge gives that partner
  ``timeoutS: 15`` (the per-partner setting an operator uses for a known-slow endpoint) so its
  pushes do succeed, 10 s each; the naive bridge gets the same 15 s client timeout;
- ``never``: 19 healthy + one that never answers (default 5 s timeout in both bridges; the
  bridge retries on its schedule and opens the endpoint's circuit breaker after 20 failures).

For each run: deliveries/s and p50/p99 latency of the 19 (20) healthy partners, and what the
slow partner got. (a) the raw HTTP clients at concurrency 20 × 16 = 320 (healthy receivers).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import ACS_TYPES, build_pushes, delivery_body, log, post_pushes, scenario_env
from bench.limits import http_limit
from bench.scenarios.common import Context, naive_run, ratio, start_bridge

NAME = "s4-isolation"
TITLE = "4. Isolation: one slow partner among 20"
VARIANTS = ("baseline", "slow", "never")
SLOW_S = 10.0


def _healthy(stats: dict[str, Any], sent_at: float, events: int, healthy: int) -> dict[str, Any]:
    h = stats["h"]
    window = (h["last"] - sent_at) if h["received"] else None
    return {"received": h["received"], "expected": events * healthy,
            "missing": max(0, events * healthy - h["unique"]), "duplicates": h["duplicates"],
            "deliveries_per_s": h["received"] / window if window else None,
            "p50_ms": h["p50_ms"], "p95_ms": h["p95_ms"], "p99_ms": h["p99_ms"], "max_ms": h["max_ms"]}


def _bridge(ctx: Context, logs: Any, watch: Any, rx: Any, pushes: Any, events: int, rate: float, variant: str,
            dests: Any, n_healthy: int, drain_s: float, label: str | None = None) -> dict[str, Any]:
    """One run of the bridge (fresh api + worker) for ``variant``; the healthy partners' figures."""
    label = label or variant
    group = f"s4-{label}-bridge"
    slow_delivery = {"timeoutS": 15} if variant == "slow" else None
    stack, info = start_bridge(ctx, logs, watch, rx, f"s4-{label}", dests(group)[:n_healthy], ACS_TYPES)
    try:
        if variant != "baseline":
            asyncio.run(stack.create_partners(dests(group)[n_healthy:], ACS_TYPES, delivery=slow_delivery))
        log(f"  (c) bridge, {label}: {rate:g} events/s for {events / rate:.0f} s")
        t0 = time.time()
        sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, concurrency=32,
                                       rate=rate, label="ingest"))
        rx.wait_count(group + "/h", events * n_healthy, timeout=drain_s, idle=10)
        stats = rx.stats(group + "/", split=["h", "x"], expect=events)
    finally:
        stack.stop()
    b = _healthy(stats, t0, events, n_healthy)
    b.update(setup=info, slow_partner_received=stats["x"]["received"], ingest_failed_pushes=sent.failed)
    log(f"      healthy: {b['received']:,}/{events * n_healthy:,} delivered, "
        f"{b['deliveries_per_s'] or 0:,.0f}/s, p99 {b['p99_ms']} ms; slow partner got {b['slow_partner_received']}")
    return b


def run(ctx: Context, rate: float = 20.0, seconds: float = 20.0, partners: int = 20,
        naive_extra_s: float = 10.0, drain_s: float = 30.0, http_requests: int = 6000) -> dict[str, Any]:
    events_target = int(rate * seconds)
    pushes = build_pushes(events_target, seed=31)
    events = sum(p.events for p in pushes)
    healthy_n = partners - 1
    out: dict[str, Any] = {"sizes": {"partners": partners, "rate": rate, "seconds": seconds, "events": events,
                                     "slow_answer_s": SLOW_S, "naive_max_seconds": seconds + naive_extra_s,
                                     "drain_allowance_s": drain_s},
                           "runs": {}}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        concurrency = min(1024, partners * 16)
        log(f"  (a) raw HTTP clients at concurrency {concurrency}")
        out["limit_http"] = http_limit(rx, delivery_body(pushes[0]), concurrency, http_requests, "s4-limit")

        dest_fns: dict[str, Any] = {}
        for variant in VARIANTS:
            n_healthy = partners if variant == "baseline" else healthy_n

            def dests(group: str, variant: str = variant, n_healthy: int = n_healthy) -> list[tuple[str, str]]:
                d = [(f"{group}-h{i}", rx.url(group, f"h{i:02d}")) for i in range(n_healthy)]
                if variant == "slow":
                    d.append((f"{group}-x", rx.url(group, "x", "slow", SLOW_S)))
                elif variant == "never":
                    d.append((f"{group}-x", rx.url(group, "x", "never")))
                return d

            res: dict[str, Any] = {"healthy_partners": n_healthy}
            dest_fns[variant] = dests
            group = f"s4-{variant}-naive"
            subs = {t: [url for _, url in dests(group)] for t in ACS_TYPES}
            log(f"  (b) naive bridge, {variant}: {rate:g} events/s for {seconds:g} s")
            t0 = time.time()
            naive = naive_run(ctx, logs, watch, rx, group, pushes, subs, max_seconds=seconds + naive_extra_s,
                              rate=rate, timeout_s=15.0 if variant == "slow" else 5.0)
            stats = rx.stats(group + "/", split=["h", "x"], expect=events)
            res["naive"] = _healthy(stats, t0, events, n_healthy)
            res["naive"]["slow_partner_received"] = stats["x"]["received"]
            res["naive"]["events_processed"] = naive["naive"].get("events")
            log(f"      healthy: {res['naive']['received']:,}/{events * n_healthy:,} delivered, "
                f"{res['naive']['deliveries_per_s'] or 0:,.0f}/s, p99 {res['naive']['p99_ms']} ms")

            res["bridge"] = _bridge(ctx, logs, watch, rx, pushes, events, rate, variant, dests, n_healthy, drain_s)
            b = res["bridge"]
            res["ratios"] = {
                "deliveries_bridge_over_naive": ratio(b["deliveries_per_s"], res["naive"]["deliveries_per_s"]),
                "p99_bridge_over_naive": ratio(b["p99_ms"], res["naive"]["p99_ms"]),
                "deliveries_bridge_over_http_limit": ratio(b["deliveries_per_s"], out["limit_http"]["rps"]),
            }
            out["runs"][variant] = res
        # The variants run one after another on a shared machine, so the baseline is measured again
        # after them: each variant is compared with the mean of the two baselines around it.
        base = out["runs"]["baseline"]
        base["bridge_again"] = _bridge(ctx, logs, watch, rx, pushes, events, rate, "baseline",
                                       dest_fns["baseline"], partners, drain_s, label="baseline-again")
    base_p99s = [p for p in (base["bridge"]["p99_ms"], base["bridge_again"]["p99_ms"]) if p is not None]
    base["bridge_p99_ms_mean"] = sum(base_p99s) / len(base_p99s) if base_p99s else None
    for variant in VARIANTS[1:]:
        r = out["runs"][variant]
        r["ratios"]["bridge_p99_over_baseline"] = ratio(r["bridge"]["p99_ms"], base["bridge_p99_ms_mean"])
        r["ratios"]["naive_p99_over_baseline"] = ratio(r["naive"]["p99_ms"], base["naive"]["p99_ms"])
        r["ratios"]["bridge_deliveries_over_baseline"] = ratio(r["bridge"]["deliveries_per_s"],
                                                              base["bridge"]["deliveries_per_s"])
    out["rss"] = watch.report()
    return out
