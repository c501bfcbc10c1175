"""Scenario 6 — crash: the worker SIGKILLed in the middle of the throughput workload, then restarted.

The scenario-1 workload (10 partners, every type), smaller. All events are ingested first; when
the receivers have ``kill_at`` of the expected deliveries the worker gets SIGKILL and a new worker
starts at once (same consumer groups). Counted per (partner, event): lost (never delivered) and
duplicates (delivered more than once; the bridge's ``X-Bridge-Delivery-Id`` is the same on both, so a
partner can drop them). The same is done to the naive bridge (auto-commit consumer) for comparison;
the raw Kafka/HTTP limit has nothing to crash, so (a) is not applicable here. The naive bridge's
consumer gets a 6 s session timeout so its restart does not wait 45 s for the dead member.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import ACS_TYPES, build_pushes, log, post_pushes, scenario_env
from bench.scenarios.common import Context, naive_run, start_bridge

NAME = "s6-crash"
TITLE = "6. Crash: worker SIGKILLed mid-run and restarted"


def run(ctx: Context, events: int, partners: int = 10, kill_at: float = 0.4, naive_events: int = 500,
        recover_timeout_s: float = 150.0) -> dict[str, Any]:
    pushes = build_pushes(events, seed=61)
    events = sum(p.events for p in pushes)
    expected = events * partners
    out: dict[str, Any] = {"sizes": {"events": events, "partners": partners, "deliveries": expected,
                                     "kill_at_fraction": kill_at, "naive_events": naive_events}}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        npushes = build_pushes(naive_events, seed=62)
        nevents = sum(p.events for p in npushes)
        subs = {t: [rx.url("s6-naive", f"p{i}") for i in range(partners)] for t in ACS_TYPES}
        log(f"  (b) naive bridge: {nevents} events x {partners} partners, SIGKILL at {kill_at:.0%}")
        # A 6 s consumer session (librdkafka's default is 45 s) so that the restarted naive bridge gets
        # the partitions of the dead one quickly; it changes how soon it resumes, not what it loses.
        naive = naive_run(ctx, logs, watch, rx, "s6-naive", npushes, subs, max_seconds=60, kill_at=kill_at,
                          session_timeout_ms=6000)
        ns = rx.stats("s6-naive/", expect=nevents, partners=partners)["all"]
        out["naive"] = {"events": nevents, "expected": nevents * partners, "received": ns["received"],
                        "lost": ns["missing"], "duplicates": ns["duplicates"], "killed": naive["killed"]}
        log(f"      naive: lost {ns['missing']}, duplicates {ns['duplicates']}")

        dests = [(f"s6-p{i}", rx.url("s6-bridge", f"p{i}")) for i in range(partners)]
        stack, info = start_bridge(ctx, logs, watch, rx, "s6", dests, ACS_TYPES)
        try:
            log(f"  (c) bridge: {events:,} events x {partners} partners; SIGKILL the worker at {kill_at:.0%}")
            t0 = time.time()
            sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, 32))
            n_kill, _ = rx.wait_count("s6-bridge/", int(expected * kill_at), timeout=120, idle=30)
            stack.kill_worker()
            killed_at = time.time()
            log(f"      worker SIGKILLed after {n_kill:,} deliveries; restarting it")
            stack.start_worker()
            after_kill = rx.count("s6-bridge/")
            # Progress resumes once the new worker has its partitions (the dead member's session
            # must expire first).
            resumed = None
            deadline = time.monotonic() + recover_timeout_s
            while time.monotonic() < deadline:
                if rx.count("s6-bridge/") > after_kill + 10:
                    resumed = time.time() - killed_at
                    break
                time.sleep(0.25)
            stats = rx.stats("s6-bridge/", expect=events, partners=partners)["all"]
            if stats["unique"] < expected:
                deadline = time.monotonic() + recover_timeout_s
                last_unique, last_change = stats["unique"], time.monotonic()
                while time.monotonic() < deadline:
                    time.sleep(1.0)
                    stats = rx.stats("s6-bridge/", expect=events, partners=partners)["all"]
                    if stats["unique"] >= expected:
                        break
                    if stats["unique"] != last_unique:
                        last_unique, last_change = stats["unique"], time.monotonic()
                    elif time.monotonic() - last_change > 45:
                        break
            time.sleep(3.0)  # late duplicates
            stats = rx.stats("s6-bridge/", expect=events, partners=partners)["all"]
        finally:
            stack.stop()
        out["bridge"] = {**info, "ingest_failed_pushes": sent.failed, "expected": expected,
                         "received": stats["received"], "lost": stats["missing"], "duplicates": stats["duplicates"],
                         "killed_after_deliveries": n_kill, "resumed_after_s": resumed,
                         "all_delivered_after_s": (stats["last"] - t0) if stats["last"] else None}
        b = out["bridge"]
        log(f"      bridge: lost {b['lost']}, duplicates {b['duplicates']:,}, deliveries resumed "
            f"{(b['resumed_after_s'] or float('nan')):.1f} s after the kill")
    out["rss"] = watch.report()
    return out
