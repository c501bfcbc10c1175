"""Scenario 5 — subscription scale: 10, 1,000 and 10,000 partners subscribed; routing cost per event.

Two measurements, labelled apart in the report:

1. **In-process, pure functions** (no Kafka, no HTTP): a ``RegistryView`` filled with N partners
   and their subscriptions, then for each of the same realistic events
   ``view.by_event_type(type)`` + ``matching.route(...)`` (+ ``DeliveryTask.encode()`` of each task,
   which routing does before producing). Two shapes:

   - *10 match*: 10 partners take the events' types, the other N-10 are subscribed to other
     types; cost per event should not depend on N;
   - *all match*: all N partners take the type; cost per event grows with N by design (N tasks),
     so the table gives the cost per task.

   Also timed: rebuilding the by-type index (``RegistryView`` drops it on every registry change
   and the next event rebuilds it) and ``partner_by_app_key`` (every signed Artemis call).

2. **The worker process**: a bridge whose registry holds N partners (written straight to the
   registry topics — 10,000 partners through the API would not fit the time budget — in exactly
   the records the API writes), one of which takes the events' types. The worker's CPU time
   (``/proc/<pid>/stat`` utime+stime) over the run divided by the events it routed: routing plus
   one delivery per event. Also the API's latency for a signed ``eventSubscriptionView`` by the
   last-created partner (the appKey lookup scans the partners).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.harness import (
    ACS_TYPES,
    VIEW_PATH,
    BridgeStack,
    PartnerRef,
    build_pushes,
    log,
    post_pushes,
    proc_status_kb,
    scenario_env,
)
from bench.scenarios.common import Context, ratio

NAME = "s5-subscriptions"
TITLE = "5. Subscription scale: routing cost per event"
OTHER_TYPE_BASE = 1_000_000


def _records(pushes: Sequence[Any]) -> list[Any]:
    from bridge.ingest import to_records
    from bridge.platform.notify import parse_notify

    out = []
    for push in pushes:
        out.extend(to_records(parse_notify(push.stamped(0.0)), time.time()))
    return out


def _view(n: int, matching: int) -> Any:
    """A RegistryView (not started) holding ``n`` partners; the first ``matching`` take ACS_TYPES."""
    from bridge.registry.models import EncryptedSecret, Partner, Subscription
    from bridge.registry.view import RegistryView
    from bridge.settings import Settings

    view = RegistryView(Settings(kafka_bootstrap="127.0.0.1:1"))
    now = time.time()
    for i in range(n):
        pid = f"p{i:05d}"
        view.partners[pid] = Partner(id=pid, name=pid, user_id="u", app_key=str(20_000_000 + i),
                                     secrets=(EncryptedSecret(token="t", created_at=now),), event_types=None)
        types = ACS_TYPES if i < matching else (OTHER_TYPE_BASE + i,)
        for t in types:
            sub = Subscription(partner_id=pid, event_type=t, event_dest=f"http://127.0.0.1:9/p/{pid}")
            view.subscriptions[sub.key] = sub
    return view


def _time_route(view: Any, records: Sequence[Any], repeat: int = 3) -> dict[str, Any]:
    from bridge.routing.matching import route

    statuses = [0, 1, 2]
    view.by_event_type(records[0].event_type)  # build the index outside the timing
    best_route = best_total = float("inf")
    tasks = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        routed = [route(r, view.by_event_type(r.event_type), view.partners, statuses, 0.0) for r in records]
        t1 = time.perf_counter()
        for ts in routed:
            for t in ts:
                t.encode()
        t2 = time.perf_counter()
        tasks = sum(len(ts) for ts in routed)
        best_route = min(best_route, t1 - t0)
        best_total = min(best_total, t2 - t0)
    n = len(records)
    return {"events": n, "tasks_per_event": tasks / n,
            "route_us_per_event": best_route / n * 1e6, "route_encode_us_per_event": best_total / n * 1e6,
            "route_encode_us_per_task": best_total / max(tasks, 1) * 1e6,
            "encode_us_per_task": (best_total - best_route) / max(tasks, 1) * 1e6}


def in_process(sizes: Sequence[int], events: int) -> dict[str, Any]:
    pushes = build_pushes(events, seed=41)
    records = _records(pushes)
    out: dict[str, Any] = {}
    for n in sizes:
        row: dict[str, Any] = {}
        view = _view(n, min(10, n))
        row["match10"] = _time_route(view, records)
        t0 = time.perf_counter()
        for _ in range(5):
            view._by_type = None  # noqa: SLF001 - what every registry change does
            view.by_event_type(records[0].event_type)
        row["index_rebuild_ms"] = (time.perf_counter() - t0) / 5 * 1e3
        last_key = str(20_000_000 + n - 1)
        t0 = time.perf_counter()
        for _ in range(20):
            view.partner_by_app_key(last_key)
        row["app_key_lookup_us"] = (time.perf_counter() - t0) / 20 * 1e6
        # All N take the type: fewer events so that 10,000 tasks per event stay in budget.
        few = records[: max(3, min(len(records), 30_000 // n))]
        row["match_all"] = _time_route(_view(n, n), few, repeat=1 if n >= 1000 else 3)
        out[str(n)] = row
        log(f"    in-process N={n:>6,}: 10 match {row['match10']['route_encode_us_per_event']:8.1f} us/event; "
            f"all match {row['match_all']['route_encode_us_per_task']:6.1f} us/task; "
            f"index rebuild {row['index_rebuild_ms']:.2f} ms; appKey lookup {row['app_key_lookup_us']:.1f} us")
    return out


def run(ctx: Context, sizes: Sequence[int] = (10, 1000, 10000), events: int = 1500,
        in_process_events: int = 2000) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {"partners": list(sizes), "worker_events": events,
                                     "in_process_events": in_process_events}}
    log("  in-process: by_event_type + route() + encode over a registry of N partners")
    out["in_process"] = in_process(sizes, in_process_events)
    pushes = build_pushes(events, seed=43)
    events = sum(p.events for p in pushes)
    out["worker"] = {}
    with scenario_env(NAME, ctx.logs, ctx.broker) as (logs, watch, rx):
        for n in sizes:
            group = f"s5-{n}"
            stack = BridgeStack(ctx.bootstrap, f"s5-{n}", logs, watch)
            from bridge.kafka.admin import ensure_topics
            from bridge.registry.partners import new_app_secret

            ensure_topics(stack.settings)
            secret = new_app_secret()
            matched_dest = rx.url(group, "match")

            def subs(i: int, n: int = n, dest: str = matched_dest) -> list[tuple[int, str]]:
                if i == 0:
                    return [(t, dest) for t in ACS_TYPES]
                return [(OTHER_TYPE_BASE + i, f"{rx.base}/p/{group}-other/o{i}")]

            log(f"  (c) bridge with {n:,} partners: seeding the registry topics")
            seed_s = stack.seed_registry(n, subs, secret=secret)
            t0 = time.monotonic()
            stack.start()
            warm = stack.warm_up(rx)
            row: dict[str, Any] = {"seed_s": seed_s, "start_to_first_delivery_s": time.monotonic() - t0,
                                   "warm_up_s": warm}
            try:
                last = PartnerRef(id="", app_key=str(20_000_000 + n - 1), app_secret=secret, dest="", name="")
                calls = asyncio.run(stack.signed_call_ms(last, VIEW_PATH, {}, n=20))
                row["signed_view_ms_median"] = statistics.median(calls)
                row["signed_view_ms_max"] = max(calls)
                worker0 = watch.cpu("bridge worker")
                t1 = time.time()
                sent = asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, pushes, 32))
                n_got, complete = rx.wait_count(group + "/", events, timeout=120, idle=20)
                stats = rx.stats(group + "/", expect=events)["all"]
                cpu = watch.cpu("bridge worker") - worker0
                assert stack.worker is not None and stack.api is not None
                row["worker_peak_rss_mb"] = (proc_status_kb(stack.worker.pid, "VmHWM") or 0) / 1024
                row["api_peak_rss_mb"] = (proc_status_kb(stack.api.pid, "VmHWM") or 0) / 1024
            finally:
                stack.stop()
            row.update(events=events, delivered=stats["received"], complete=complete,
                       ingest_failed_pushes=sent.failed, worker_cpu_s=cpu,
                       worker_cpu_ms_per_event=cpu / events * 1e3,
                       wall_s=(stats["last"] - t1) if stats["last"] else None,
                       p99_ms=stats["p99_ms"])
            out["worker"][str(n)] = row
            log(f"      N={n:,}: worker CPU {row['worker_cpu_ms_per_event']:.2f} ms/event, signed view "
                f"{row['signed_view_ms_median']:.1f} ms, start to first delivery {row['start_to_first_delivery_s']:.1f} s")
    first, last_n = str(sizes[0]), str(sizes[-1])
    out["ratios"] = {
        "in_process_10match_largest_over_smallest": ratio(
            out["in_process"][last_n]["match10"]["route_encode_us_per_event"],
            out["in_process"][first]["match10"]["route_encode_us_per_event"]),
        "worker_cpu_largest_over_smallest": ratio(out["worker"][last_n]["worker_cpu_ms_per_event"],
                                                  out["worker"][first]["worker_cpu_ms_per_event"]),
    }
    out["rss"] = watch.report()
    return out
