"""Scenario 7 — memory: the worker's RSS at 10,000 partners with 1,000 pushes in flight.

A bridge whose registry holds ``partners`` partners (seeded straight into the registry topics, as
in scenario 5); ``in_flight`` of them are subscribed to one event type at a receiver URL that holds
each request ``hold_s`` seconds before answering, the others to types no event carries. Then
``rounds`` events of that type are posted one after the other, each once every held push of the
previous one was answered: each event becomes ``in_flight`` pushes, all open at once.

Sampled every 0.1 s: the worker's VmRSS (``/proc``) and how many requests the receiver holds.
Reported: the worker's RSS with the registry loaded and idle (before the first event), its peak
while the pushes were held, the most pushes held at once, and (peak − idle) / pushes held, the
memory one push in flight costs. (a) and (b) have no registry to hold and are not run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bench.harness import BridgeStack, build_pushes, log, post_pushes, proc_status_kb, scenario_env
from bench.scenarios.common import Context

NAME = "s7-memory"
TITLE = "7. Memory: worker RSS at 10,000 partners, 1,000 pushes in flight"
EVENT_TYPE = 196893
OTHER_TYPE_BASE = 1_000_000


def run(ctx: Context, partners: int = 10_000, in_flight: int = 1000, hold_s: float = 3.0,
        rounds: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {"partners": partners, "in_flight": in_flight, "hold_s": hold_s,
                                     "rounds": rounds}}
    from bridge.kafka.admin import ensure_topics
    from bridge.registry.partners import new_app_secret

    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        stack = BridgeStack(ctx.bootstrap, "s7", logs, watch)
        ensure_topics(stack.settings)
        group = "s7-held"

        def subs(i: int) -> list[tuple[int, str]]:
            if i < in_flight:
                return [(EVENT_TYPE, rx.url(group, f"p{i}", mode="slow", delay=hold_s))]
            return [(OTHER_TYPE_BASE + i, rx.url("s7-other", f"o{i}"))]

        log(f"  (c) bridge with {partners:,} partners ({in_flight:,} at a receiver holding each push "
            f"{hold_s:g} s): seeding the registry topics")
        out["seed_s"] = stack.seed_registry(partners, subs, secret=new_app_secret())
        stack.start()
        try:
            out["warm_up_s"] = stack.warm_up(rx)
            assert stack.worker is not None
            pid = stack.worker.pid
            time.sleep(2.0)  # let the start-up's garbage settle before the idle figure
            idle_kb = proc_status_kb(pid, "VmRSS") or 0
            samples: list[tuple[float, int, int]] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    rss = proc_status_kb(pid, "VmRSS")
                    if rss is None:
                        return
                    try:
                        held = rx.held()
                    except OSError:
                        held = -1
                    samples.append((time.time(), rss, held))
                    stop.wait(0.1)

            sampler = threading.Thread(target=sample, name="s7-rss", daemon=True)
            sampler.start()
            url = stack.base + stack.settings.ingest_path
            t0 = time.time()
            try:
                for r in range(rounds):
                    push = build_pushes(1, seed=70 + r, event_type=EVENT_TYPE, max_per_push=1)
                    asyncio.run(post_pushes(url, push, concurrency=1))
                    rx.wait_count(group + "/", in_flight * (r + 1), timeout=max(60.0, 10 * hold_s),
                                  idle=max(20.0, 3 * hold_s), label="held pushes answered")
            finally:
                stop.set()
                sampler.join(5)
            delivered = rx.count(group + "/")
            hwm_kb = proc_status_kb(pid, "VmHWM") or 0
        finally:
            stack.stop()
    peak_kb = max((rss for _, rss, _ in samples), default=0)
    most_held = max((held for _, _, held in samples), default=0)
    out["worker"] = {
        "idle_rss_mb": idle_kb / 1024, "peak_rss_mb": peak_kb / 1024, "vm_hwm_mb": hwm_kb / 1024,
        "most_held": most_held, "delivered": delivered, "expected": in_flight * rounds,
        "seconds": time.time() - t0,
        "rss_per_push_in_flight_kb": (peak_kb - idle_kb) / most_held if most_held > 0 else None,
        "samples": [[round(t - t0, 2), round(rss / 1024, 1), held] for t, rss, held in samples],
    }
    w = out["worker"]
    log(f"      worker RSS idle {w['idle_rss_mb']:.0f} MB, peak {w['peak_rss_mb']:.0f} MB with {most_held:,} "
        f"pushes held ({w['rss_per_push_in_flight_kb'] or 0:.1f} kB per push in flight); "
        f"delivered {delivered:,}/{in_flight * rounds:,}")
    out["rss"] = watch.report()
    return out
