"""What-if (after): scenarios 1 and 2 again with ``bench.whatif``'s patches in the api and worker.

Not one of the issue's scenarios: the report's "before / after" for the bottlenecks found, measured
without editing ``bridge/``. "Before" is scenario 1 / 2 of the same run (the bridge as it is);
"after" is the same workload shape against ``python -m bench.whatif api|worker`` (the bridge's CLI
with the encode and consumer-poll fixes patched in; see that module).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import ACS_TYPES, build_pushes, log, post_pushes, scenario_env
from bench.scenarios.common import Context, deliveries_rate, start_bridge
from bench.scenarios.s2_latency import spikes

NAME = "s7-whatif"
TITLE = "7. What-if: the fixes patched in (before / after)"


def run(ctx: Context, events: int = 1500, partners: int = 10, rate: float = 100.0, seconds: float = 8.0
        ) -> dict[str, Any]:
    pushes = build_pushes(events)  # the same pushes as scenario 1 (same seed)
    events = sum(p.events for p in pushes)
    out: dict[str, Any] = {"sizes": {"events": events, "partners": partners, "latency_rate": rate,
                                     "latency_seconds": seconds}}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        dests = [(f"s7-p{i}", rx.url("s7-thr", f"p{i}")) for i in range(partners)]
        stack, info = start_bridge(ctx, logs, watch, rx, "s7-thr", dests, ACS_TYPES, module="bench.whatif")
        try:
            worker0 = watch.cpu("bridge worker")
            t0 = time.time()
            log(f"  (c') patched bridge: {events:,} events x {partners} partners")
            sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, 32))
            rx.wait_count("s7-thr/", events * partners, timeout=120, idle=20, label="deliveries")
            stats = rx.stats("s7-thr/", expect=events, partners=partners)["all"]
            cpu = watch.cpu("bridge worker") - worker0
        finally:
            stack.stop()
        out["throughput"] = {"deliveries": stats["received"], "missing": stats["missing"],
                             "duplicates": stats["duplicates"], "deliveries_per_s": deliveries_rate(stats, t0),
                             "ingest_events_per_s": sent.events / sent.seconds if sent.seconds else None,
                             "worker_cpu_ms_per_delivery": cpu / stats["received"] * 1e3 if stats["received"] else None}
        log(f"      {out['throughput']['deliveries_per_s'] or 0:,.0f} deliveries/s, "
            f"{out['throughput']['worker_cpu_ms_per_delivery'] or 0:.2f} ms worker CPU per delivery")

        lat_pushes = build_pushes(int(rate * seconds), seed=11)  # scenario 2's first workload
        n_lat = sum(p.events for p in lat_pushes)
        stack, info2 = start_bridge(ctx, logs, watch, rx, "s7-lat", [("s7-l", rx.url("s7-lat", "p0"))], ACS_TYPES,
                                    module="bench.whatif")
        try:
            log(f"  (c') patched bridge: {rate:g} events/s for {seconds:g} s, 1 partner")
            asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, lat_pushes, 64, rate=rate))
            rx.wait_count("s7-lat/", n_lat, timeout=30, idle=10)
            lat = rx.stats("s7-lat/", expect=n_lat, partners=1, quantiles=200, series=int(4 * seconds))["all"]
        finally:
            stack.stop()
        out["latency"] = {k: lat[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
        out["latency"].update(received=lat["received"], expected=n_lat, quantiles_ms=lat.get("quantiles_ms"),
                              series=lat.get("series"), spikes=spikes(lat.get("series") or [], lat["p50_ms"]))
        out["partner_setup_per_partner_ms"] = info.get("partner_setup_per_partner_ms")
        log(f"      p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms")
    out["rss"] = watch.report()
    return out
