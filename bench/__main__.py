"""``python -m bench`` (``make bench``): every scenario, side by side with the machine's limit and the naive bridge.

Starts a dedicated local Kafka (port 29792, throw-away data directory), runs the six scenarios of
issue #7 in order — each against (a) the limit of this machine for the same work, (b) the naive
bridge of ``bench/naive.py`` and (c) the bridge (``python -m bridge api`` + ``worker``
subprocesses) — and issue #15's memory scenario (s7, the bridge alone), then writes the JSON results to ``bench/out/`` and the report to
``docs/benchmarks.md`` with the latency plot ``docs/benchmarks-latency.png``.

Sizes: ``--quick`` (the default) scales the issue's counts down so that the whole run fits in
15 minutes on a 2-core machine; ``--full`` uses the issue's sizes (100,000 events ...), which takes
well over an hour here. The sizes used are printed at the start and written into the report.

Options: ``--only s1,s4`` runs some scenarios (the report then goes to ``bench/out/benchmarks.md``
unless ``--report`` says otherwise), ``--profile`` (on in ``make bench``) records the worker and the api with py-spy (if installed)
and refreshes ``bench/profiles/``, ``--budget S`` skips scenarios that would start after S seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.harness import CLEANUP, DEFAULT_BROKER_PORT, OUT, ROOT, Broker, log

SCENARIOS = ("s1", "s2", "s3", "s4", "s5", "s6", "s7")
MODULES = {"s1": "s1_throughput", "s2": "s2_latency", "s3": "s3_fanout", "s4": "s4_isolation",
           "s5": "s5_subscriptions", "s6": "s6_crash", "s7": "s7_memory"}

#: The issue's sizes (``--full``).
FULL: dict[str, dict[str, Any]] = {
    "s1": {"events": 100_000, "partners": 10, "naive_seconds": 300.0, "http_requests": 50_000},
    "s2": {"rates": (100, 500, 2000), "seconds": (30, 60, 60), "partners": 1, "drain_s": 180.0},
    "s3": {"events": 100, "partners": 1000, "naive_seconds": 120.0, "http_requests": 50_000,
           "kafka_records": 100_000},
    "s4": {"rate": 20.0, "seconds": 60.0, "partners": 20, "naive_extra_s": 30.0, "drain_s": 60.0,
           "http_requests": 20_000},
    "s5": {"sizes": (10, 1000, 10000), "events": 5000, "in_process_events": 5000},
    "s6": {"events": 100_000, "partners": 10, "kill_at": 0.4, "naive_events": 5000},
    "s7": {"partners": 10_000, "in_flight": 1000, "hold_s": 4.0, "rounds": 5},
}
#: Scaled down so that ``make bench`` stays under 15 minutes on 2 cores (the default).
QUICK: dict[str, dict[str, Any]] = {
    "s1": {"events": 2000, "partners": 10, "naive_seconds": 12.0, "http_requests": 5000},
    "s2": {"rates": (100, 500, 2000), "seconds": (8, 6, 3), "partners": 1, "drain_s": 20.0},
    "s3": {"events": 15, "partners": 1000, "naive_seconds": 12.0, "http_requests": 4000,
           "kafka_records": 20_000},
    "s4": {"rate": 20.0, "seconds": 12.0, "partners": 20, "naive_extra_s": 5.0, "drain_s": 20.0,
           "http_requests": 4000},
    "s5": {"sizes": (10, 1000, 10000), "events": 1000, "in_process_events": 1000},
    "s6": {"events": 1500, "partners": 10, "kill_at": 0.4, "naive_events": 200},
    "s7": {"partners": 10_000, "in_flight": 1000, "hold_s": 3.0, "rounds": 2},
}


def machine() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = {}
    for pkg in ("event-bridge", "confluent-kafka", "aiohttp", "httpx",
                "httpx-aiohttp", "fastapi", "uvicorn", "matplotlib"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    from bridge.ops.localkafka import pinned_version

    versions["kafka (broker)"] = pinned_version()
    return {"cores": os.cpu_count(), "cpu": cpu, "memory": mem, "python": sys.version.split()[0],
            "platform": platform.platform(), "versions": versions,
            "load_avg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="scaled-down sizes, < 15 min (default)")
    size.add_argument("--full", action="store_true", help="the issue's sizes (100,000 events...; > 1 h here)")
    parser.add_argument("--only", help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker and the api in s1-s3, refresh bench/profiles/")
    parser.add_argument("--budget", type=float, default=None,
                        help="skip scenarios starting after this many seconds (default 840 quick, none full)")
    parser.add_argument("--broker-port", type=int, default=DEFAULT_BROKER_PORT)
    parser.add_argument("--sizes", help='JSON overriding sizes, e.g. \'{"s1": {"events": 500}}\' (development)')
    parser.add_argument("--report", help="where to write the markdown report (default docs/benchmarks.md "
                                         "for a complete run, bench/out/benchmarks.md otherwise)")
    args = parser.parse_args(argv)
    mode = "full" if args.full else "quick"
    sizes = {k: dict(v) for k, v in (FULL if args.full else QUICK).items()}
    if args.sizes:
        for key, values in json.loads(args.sizes).items():
            sizes[key].update(values)
        mode += " (custom sizes)"
    chosen = [s.strip() for s in args.only.split(",")] if args.only else list(SCENARIOS)
    bad = [s for s in chosen if s not in SCENARIOS]
    if bad:
        parser.error(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
    budget = args.budget if args.budget is not None else (840.0 if not args.full else 10 ** 6)

    started = time.monotonic()
    stamp = dt.datetime.now().astimezone()
    info = machine()
    results: dict[str, Any] = {"meta": {"started": stamp.isoformat(timespec="seconds"), "mode": mode,
                                        "scenarios": chosen, "sizes": {s: sizes[s] for s in chosen},
                                        "budget_s": budget, "machine": info,
                                        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])},
                               "scenarios": {}}
    log(f"event-bridge benchmarks, {mode} sizes, {info['cores']} cores ({info['cpu']}), {info['memory']}")
    for s in chosen:
        log(f"  {s}: " + ", ".join(f"{k}={v}" for k, v in sizes[s].items()))
    if not args.full:
        log("  (scaled down from the issue's sizes so that the run stays under 15 minutes; --full for those)")

    OUT.mkdir(parents=True, exist_ok=True)
    logs = OUT / "logs" / stamp.strftime("%Y%m%d-%H%M%S")
    broker = Broker(args.broker_port)
    from bench.scenarios.common import Context

    try:
        log(f"starting Kafka on {broker.bootstrap} (data in {broker.tmp})")
        broker.start()
        ctx = Context(broker, logs, mode, started=started, budget_s=budget, profile=args.profile)
        log("warm-up (not reported): one short bridge run, so that the broker's JVM is not cold for scenario 1")
        from bench.scenarios.common import warm_up

        results["meta"]["warm_up_s"] = round(warm_up(ctx), 1)
        for s in chosen:
            module = importlib.import_module(f"bench.scenarios.{MODULES[s]}")
            if ctx.elapsed() > budget:
                log(f"== {module.TITLE}: SKIPPED (time budget of {budget:.0f} s used up)")
                results["scenarios"][s] = {"skipped": f"time budget of {budget:.0f} s used up"}
                continue
            log(f"== {module.TITLE}")
            t0 = time.monotonic()
            try:
                results["scenarios"][s] = module.run(ctx, **sizes[s])
            except Exception as exc:  # noqa: BLE001 - one failed scenario must not lose the others
                log(f"   FAILED: {type(exc).__name__}: {exc}")
                results["scenarios"][s] = {"failed": f"{type(exc).__name__}: {exc}",
                                           "traceback": traceback.format_exc()}
            finally:
                CLEANUP.stop_all()
            results["scenarios"][s]["seconds"] = round(time.monotonic() - t0, 1)
            log(f"   {s} took {results['scenarios'][s]['seconds']:.0f} s (total {ctx.elapsed():.0f} s)")
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
    finally:
        CLEANUP.stop_all()
        try:
            broker.stop()
        except Exception as exc:  # noqa: BLE001
            log(f"stopping the broker: {exc}")
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    results["meta"]["logs"] = str(logs.relative_to(ROOT))

    name = f"results-{stamp.strftime('%Y%m%d-%H%M%S')}.json"
    (OUT / name).write_text(json.dumps(results, indent=1, default=str))
    (OUT / "latest.json").write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote bench/out/{name} (and bench/out/latest.json)")

    from bench import report

    complete = set(chosen) == set(SCENARIOS)
    target = Path(args.report) if args.report else (ROOT / "docs" / "benchmarks.md" if complete
                                                     else OUT / "benchmarks.md")
    if args.profile:
        report.save_profiles(logs)
    written = report.write(results, target)
    for path in written:
        log(f"wrote {path}")
    log(f"done in {results['meta']['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
