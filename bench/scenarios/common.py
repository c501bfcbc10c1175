"""Pieces the scenarios share: the run context, starting the bridge, running the naive bridge."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import (
    BridgeStack,
    Broker,
    NaiveProc,
    ProcWatch,
    Push,
    Receiver,
    create_topic,
    log,
    produce_raw,
)


@dataclass
class Context:
    broker: Broker
    logs: Path
    mode: str  # "quick" | "full"
    started: float = field(default_factory=time.monotonic)
    budget_s: float = 14 * 60.0
    profile: bool = False

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def start_bridge(ctx: Context, logs: Path, watch: ProcWatch, rx: Receiver, name: str,
                 dests: Sequence[tuple[str, str]], types: Sequence[int], partner_concurrency: int = 8,
                 delivery: dict[str, Any] | None = None, **overrides: Any
                 ) -> tuple[BridgeStack, dict[str, Any]]:
    """Start api + worker, create and subscribe ``dests`` (name, url) through the API, warm up."""
    info: dict[str, Any] = {}
    t0 = time.monotonic()
    stack = BridgeStack(ctx.bootstrap, name, logs, watch, **overrides).start()
    info["start_s"] = round(time.monotonic() - t0, 2)
    t1 = time.monotonic()
    if dests:
        log(f"  (c) bridge: creating {len(dests):,} partners (admin API) + signed subscriptions...")
        refs = asyncio.run(stack.create_partners(dests, types, concurrency=partner_concurrency,
                                                 delivery=delivery,
                                                 progress_every=250 if len(dests) >= 500 else 0))
        info["partners_created"] = len(refs)
        info["partner_setup_s"] = round(time.monotonic() - t1, 2)
        info["partner_setup_per_partner_ms"] = round((time.monotonic() - t1) / len(dests) * 1e3, 2)
    info["warm_up_s"] = round(stack.warm_up(rx), 2)
    log(f"  (c) bridge up: start {info['start_s']} s, partners {info.get('partner_setup_s', 0)} s, "
        f"first delivery after {info['warm_up_s']} s")
    return stack, info


def bridge_profile(ctx: Context, stack: BridgeStack, logs: Path, seconds: float,
                   label: str | None = None) -> list[Any]:
    """py-spy on the worker and the api for ``seconds`` (only with --profile); the py-spy processes."""
    if not ctx.profile or stack.worker is None:
        return []
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        log("  py-spy not installed: no profile")
        return []
    spies = []
    for role, proc in (("worker", stack.worker), ("api", stack.api)):
        if proc is None:
            continue
        out = logs / f"{label or stack.name}-{role}.pyspy.txt"
        log(f"  profiling the {role} with py-spy for {seconds:.0f} s -> {out}")
        spies.append(subprocess.Popen([spy, "record", "--format", "raw", "-o", str(out), "-d", str(max(1, int(seconds))),
                                       "-r", "50", "--nonblocking", "--pid", str(proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def naive_run(ctx: Context, logs: Path, watch: ProcWatch, rx: Receiver, group: str,
              pushes: Sequence[Push], subs: dict[int, list[str]], max_seconds: float,
              rate: float | None = None, kill_at: float | None = None, timeout_s: float = 5.0,
              session_timeout_ms: int = 0) -> dict[str, Any]:
    """Run the naive bridge over ``pushes``.

    Without ``rate`` the records are produced first (the naive bridge then runs flat out);
    with ``rate`` they are produced at that rate while it runs. ``kill_at`` (a fraction of the
    expected posts) SIGKILLs it there and starts it again with the same consumer group (crash test).
    """
    topic = f"bench.naive.{group}.{uuid.uuid4().hex[:6]}"
    create_topic(ctx.bootstrap, topic, 6)
    events = sum(p.events for p in pushes)
    consumer_group = f"naive-{uuid.uuid4().hex[:8]}"
    producer_info: dict[str, Any] = {}
    producer_thread = None
    if rate is None:
        producer_info = produce_raw(ctx.bootstrap, topic, pushes)
    naive = NaiveProc(ctx.bootstrap, topic, subs, logs, watch, events, max_seconds, name=group,
                      group=consumer_group, timeout_s=timeout_s,
                      session_timeout_ms=session_timeout_ms)
    if rate is not None:
        time.sleep(3.0)  # let it join its group before the first record

        def produce() -> None:
            producer_info.update(produce_raw(ctx.bootstrap, topic, pushes, rate=rate))

        producer_thread = threading.Thread(target=produce, daemon=True)
        producer_thread.start()
    expected_posts = sum(len(subs.get(t, [])) for t in _types_of(pushes))
    killed = None
    if kill_at is not None:
        target = int(expected_posts * kill_at)
        n, _ = rx.wait_count(group + "/", target, timeout=max_seconds, idle=20)
        naive.kill()
        killed = {"at_received": n}
        log(f"  (b) naive bridge SIGKILLed after {n:,} posts; restarting it (same consumer group)")
        naive = NaiveProc(ctx.bootstrap, topic, subs, logs, watch, events, max_seconds, name=group + "-2",
                          group=consumer_group, timeout_s=timeout_s,
                      session_timeout_ms=session_timeout_ms)
    stats = naive.wait(max_seconds + 30)
    if producer_thread is not None:
        producer_thread.join(60)
    out = {"naive": stats, "producer": producer_info, "expected_posts": expected_posts, "killed": killed}
    return out


def _types_of(pushes: Sequence[Push]) -> list[int]:
    import json

    types = []
    for p in pushes:
        for ev in json.loads(p.template.replace(b'"benchTs":0.0', b'"benchTs":0'))["params"]["events"]:
            types.append(int(ev["eventType"]))
    return types


def deliveries_rate(stats: dict[str, Any], start: float | None = None) -> float | None:
    """Receipts per second between ``start`` (default: the first receipt) and the last receipt."""
    begin = start if start is not None else stats.get("first")
    if not stats.get("received") or not begin or stats["last"] <= begin:
        return None
    return stats["received"] / (stats["last"] - begin)


def warm_up(ctx: Context, events: int = 1000, partners: int = 10) -> float:
    """An unreported bridge run first, so that scenario 1 does not meet a cold broker JVM.

    The broker's JIT warms up over the first minutes of traffic; without this the first scenario
    measured slower than the same workload later in the run (seen at 20-30 % here).
    """
    from bench.harness import ACS_TYPES, build_pushes, post_pushes, scenario_env

    t0 = time.monotonic()
    with scenario_env("s0-warm-up", ctx.logs, ctx.broker) as (logs, watch, rx):
        dests = [(f"w-p{i}", rx.url("w", f"p{i}")) for i in range(partners)]
        stack, _ = start_bridge(ctx, logs, watch, rx, "w", dests, ACS_TYPES)
        try:
            asyncio.run(post_pushes(stack.base + stack.settings.ingest_path, build_pushes(events, seed=99), 32))
            rx.wait_count("w/", events * partners, timeout=60, idle=15)
        finally:
            stack.stop()
    return time.monotonic() - t0
