"""The report: ``docs/benchmarks.md`` (tables) and ``docs/benchmarks-latency.png`` from the results JSON.

``python -m bench.report [results.json] [out.md]`` re-renders a report from saved results
(default ``bench/out/latest.json`` → ``bench/out/benchmarks.md``).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import OUT
from bench.profile import PROFILES, summarize

DASH = "—"
#: Latency above which a 0.25 s slice counts as a stall in the before/after table.
SPIKE_MS = 250


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------


def n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return DASH
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def ms(value: Any) -> str:
    if value is None:
        return DASH
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def x(value: Any) -> str:
    if value is None:
        return DASH
    return f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def div(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return a / b


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or ("l" + "r" * (len(headers) - 1))
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _missing_note(d: dict[str, Any]) -> str:
    if not d or not d.get("missing"):
        return ""
    return f" ({n(d['missing'])} of {n(d['expected'])} not delivered in time)"


# --------------------------------------------------------------------------------------------
# goals
# --------------------------------------------------------------------------------------------


def goals(res: dict[str, Any]) -> list[list[str]]:
    sc = res["scenarios"]
    rows: list[list[str]] = []

    def verdict(ok: bool | None) -> str:
        return DASH if ok is None else ("**met**" if ok else "**not met**")

    s1 = sc.get("s1", {})
    if "ratios" in s1:
        r = s1["ratios"]["deliveries_bridge_over_http_limit"]
        rows.append(["bridge deliveries/s ≥ 50 % of the raw HTTP client's (1)",
                     f"{n(s1['bridge']['deliveries_per_s'])}/s vs {n(s1['limit_http']['rps'])}/s "
                     f"({s1['limit_http']['fastest']}) = {_pct(r)}", verdict(None if r is None else r >= 0.5)])
    s4 = sc.get("s4", {})
    if "runs" in s4:
        for v in ("slow", "never"):
            run = s4["runs"].get(v)
            if not run:
                continue
            r = run["ratios"]["deliveries_bridge_over_naive"]
            rows.append([f"≥ 10× the naive bridge in 4 ({v}: healthy partners' deliveries/s)",
                         f"{n(run['bridge']['deliveries_per_s'])}/s vs {n(run['naive']['deliveries_per_s'], 1)}/s = {x(r)}",
                         verdict(None if r is None else r >= 10)])
        for v in ("slow", "never"):
            run = s4["runs"].get(v)
            if not run:
                continue
            r = run["ratios"]["bridge_p99_over_baseline"]
            rows.append([f"healthy partners' p99 within 2× of the run without the slow one (4, {v})",
                         f"{ms(run['bridge']['p99_ms'])} ms vs {ms(_s4_base_p99(s4))} ms = {x(r)}",
                         verdict(None if r is None else r <= 2)])
    s5 = sc.get("s5", {})
    if "ratios" in s5:
        ip = s5["ratios"]["in_process_10match_largest_over_smallest"]
        wk = s5["ratios"]["worker_cpu_largest_over_smallest"]
        sizes = s5["sizes"]["partners"]
        rows.append([f"routing cost per event flat from {n(sizes[0])} to {n(sizes[-1])} partners (5, in-process route())",
                     f"{x(ip)} ({n(sizes[-1])} vs {n(sizes[0])} partners, 10 matching)",
                     verdict(None if ip is None else ip <= 1.5)])
        rows.append([f"… (5, worker CPU per event: routing + 1 delivery)", f"{x(wk)}",
                     verdict(None if wk is None else wk <= 1.5)])
    s2 = sc.get("s2", {})
    r500 = s2.get("rates", {}).get("500", {}).get("bridge")
    if r500:
        p99 = r500["p99_ms"]
        ok = p99 is not None and p99 < 100 and not r500["missing"]
        rows.append(["p99 < 100 ms at 500 events/s (2)", f"{ms(p99)} ms{_missing_note(r500)}", verdict(ok)])
    s6 = sc.get("s6", {})
    if "bridge" in s6:
        rows.append(["0 lost in the crash (6)", f"{n(s6['bridge']['lost'])} lost, {n(s6['bridge']['duplicates'])} duplicates",
                     verdict(s6["bridge"]["lost"] == 0)])
    return rows


def _s2_ratio(res: dict[str, Any], rate: str, base: str) -> tuple[float | None, str]:
    r = res["scenarios"].get("s2", {}).get("rates", {}).get(rate, {})
    b, other = r.get("bridge"), r.get(base)
    if not b or not other:
        return None, DASH
    value = div(b["p99_ms"], other["p99_ms"])
    return value, f"{ms(b['p99_ms'])} vs {ms(other['p99_ms'])} ms = {x(value)}"


def latency_goals(res: dict[str, Any]) -> list[tuple[str, float | None, str, float]]:
    """(goal, measured ratio, how it reads, bound) for issue #15's goals; None where not measured."""
    out: list[tuple[str, float | None, str, float]] = []
    for rate in ("100", "500"):
        for base, bound in (("naive", 1.0), ("limit", 3.0)):
            value, text = _s2_ratio(res, rate, base)
            out.append((f"s2 p99 at {rate}/s ≤ {bound:g}× the {'naive bridge' if base == 'naive' else 'raw pipeline'}'s",
                        value, text, bound))
    value, text = _s2_ratio(res, "2000", "limit")
    out.append(("s2 p99 at 2,000/s ≤ 2× the raw pipeline's", value, text, 2.0))
    sc = res["scenarios"]
    s1 = sc.get("s1", {})
    if "bridge" in s1:
        r = s1["ratios"]["deliveries_bridge_over_http_limit"]
        out.append(("s1 deliveries/s ≥ 0.5× the fastest raw client", r,
                    f"{n(s1['bridge']['deliveries_per_s'])} vs {n(s1['limit_http']['rps'])}/s = {x(r)}", -0.5))
        c = s1["bridge"].get("worker_cpu_ms_per_delivery")
        out.append(("worker CPU per delivery ≤ 0.25 ms", c, f"{c or 0:.2f} ms", 0.25))
        a = s1["bridge"].get("api_cpu_ms_per_event")
        out.append(("api CPU per ingested event ≤ 0.1 ms", a, f"{a or 0:.3f} ms", 0.1))
        bt = s1.get("batched")
        if bt:
            r = div(bt["events_per_s"], s1["limit_http"]["rps"])
            out.append(("batching (maxBatch 50): events/s ≥ 3× the single-event raw limit", r,
                        f"{n(bt['events_per_s'])} vs {n(s1['limit_http']['rps'])}/s = {x(r)}", -3.0))
    s3 = sc.get("s3", {})
    if "ratios" in s3:
        key = next((k for k in s3["ratios"] if "limit" in k and "deliver" in k), None)
        if key:
            r = s3["ratios"][key]
            out.append(("s3 fan-out to 1,000 partners ≥ 0.5× the limit", r, x(r), -0.5))
    s4 = sc.get("s4", {})
    for v in ("slow", "never"):
        run = s4.get("runs", {}).get(v)
        if run:
            r = run["ratios"]["deliveries_bridge_over_naive"]
            out.append((f"s4 isolation ({v}) ≥ 10× naive", r, x(r), -10.0))
            r = run["ratios"]["bridge_p99_over_baseline"]
            out.append((f"s4 healthy p99 with a {v} partner ≤ 2× without", r, x(r), 2.0))
    s6 = sc.get("s6", {})
    if "bridge" in s6:
        lost = s6["bridge"]["lost"]
        out.append(("s6 0 lost in the crash", float(lost), f"{n(lost)} lost", 0.0))
    s7 = sc.get("s7", {})
    if "worker" in s7:
        w, sz = s7["worker"], s7["sizes"]
        out.append((f"worker RSS at {n(sz['partners'])} partners with {n(sz['in_flight'])} pushes in flight < 300 MB",
                    w["peak_rss_mb"], f"{n(w['peak_rss_mb'])} MB peak ({n(w['most_held'])} held at once)", 300.0))
    return out


def goal_table(res: dict[str, Any], before: dict[str, Any] | None) -> str:
    """Goal / before / after: ``before`` is the results of the run before the issue's changes."""
    def met(value: float | None, bound: float) -> str:
        if value is None:
            return DASH
        ok = value >= -bound if bound < 0 else value <= bound
        return "**met**" if ok else "**not met**"

    earlier = {g: text for g, _, text, _ in latency_goals(before)} if before else {}
    rows = [[goal, earlier.get(goal, DASH), text, met(value, bound)]
            for goal, value, text, bound in latency_goals(res)]
    return table(["goal (issue #15; a benchmark figure, never a test assertion)", "before", "after", ""],
                 rows, "lllc")


def _pct(r: float | None) -> str:
    return DASH if r is None else f"{100 * r:.0f} %"


# --------------------------------------------------------------------------------------------
# scenario sections
# --------------------------------------------------------------------------------------------


def _failed(s: dict[str, Any]) -> str | None:
    if "skipped" in s:
        return f"_Skipped: {s['skipped']}._\n"
    if "failed" in s:
        return f"_Failed: `{s['failed']}` (traceback in the JSON results)._\n"
    return None


def section_s1(s: dict[str, Any]) -> str:
    sz, kl, hl, nv, b, r = s["sizes"], s["limit_kafka"], s["limit_http"], s["naive"], s["bridge"], s["ratios"]
    out = [f"{n(sz['events'])} events in {n(sz['pushes'])} realistic pushes (1-6 access events each), "
           f"{sz['partners']} partners each subscribed to every type, receivers answering at once: "
           f"{n(sz['deliveries'])} deliveries. The bridge's pushes are POSTed with {sz['ingest_concurrency']} concurrent "
           f"requests; its delivery concurrency is {sz['partners']} partners × maxInFlight 16 = "
           f"{sz['delivery_concurrency']}, the concurrency the raw clients get too.\n\n"]
    naive_note = "" if nv.get("complete") else f" (time-boxed at {n(sz['naive_max_seconds'])} s: {n(nv['received'])} deliveries)"
    out.append(table(
        ["", "(a) limit", "(b) naive", "(c) bridge", "bridge / limit", "bridge / naive"],
        [["events/s ingested", f"{n(kl['produce_per_s'])} (raw produce, acks=all)", "— (no ingest: raw produce)",
          n(b["ingest_events_per_s"]), x(r["ingest_bridge_over_kafka_produce"]), DASH],
         ["deliveries/s", f"{n(hl['rps'])} ({hl['fastest']} client)", n(nv["deliveries_per_s"]) + naive_note,
          n(b["deliveries_per_s"]), x(r["deliveries_bridge_over_http_limit"]), x(r["deliveries_bridge_over_naive"])],
         ["all delivered / lost / duplicates", DASH, DASH,
          f"{'yes' if b['complete'] else 'no'} / {n(b['missing'])} / {n(b['duplicates'])}", "", ""],
         ["end-to-end p50 / p99 ms (saturated: queueing)", DASH, DASH,
          f"{ms(b['e2e_ms']['p50_ms'])} / {ms(b['e2e_ms']['p99_ms'])}", "", ""],
         ["worker CPU per delivery", DASH, DASH, f"{b['worker_cpu_ms_per_delivery'] or 0:.2f} ms", "", ""],
         ["api CPU per ingested event", DASH, DASH, f"{b['api_cpu_ms_per_event'] or 0:.3f} ms", "", ""]]))
    out.append("\nRaw clients, same body, same receiver, concurrency " + str(hl["concurrency"]) + ":\n\n")
    out.append(table(["client", "req/s", "p50 ms", "p99 ms", "client CPU %", "receiver CPU %"],
                     [[k, n(v["rps_best"]), ms(v["p50_ms"]), ms(v["p99_ms"]), n(v["client_cpu_pct"]),
                       n(v["server_cpu_pct"])] for k, v in hl["clients"].items()]))
    bt = s.get("batched")
    if bt:
        out.append(f"\n**(d) batching**: the same run with every partner on `maxBatch` {bt['max_batch']}: "
                   f"{n(bt['events_delivered'])} events delivered in {n(bt['pushes'])} pushes "
                   f"({bt['events_per_push'] or 0:.1f} events per push), **{n(bt['events_per_s'])} events/s** "
                   f"({x(div(bt['events_per_s'], hl['rps']))} the raw client's single-event requests/s), "
                   f"{n(bt['missing'])} missing, {n(bt['duplicates'])} duplicates; worker CPU "
                   f"{bt['worker_cpu_ms_per_event'] or 0:.3f} ms per event delivered.\n")
    out.append(f"\nRaw Kafka: {n(kl['records'])} records of ~{n(kl['record_bytes'])} bytes; produce "
               f"{n(kl['produce_per_s'])}/s, consume {n(kl['consume_per_s'])}/s.\n")
    return "".join(out)


def section_s2(s: dict[str, Any]) -> str:
    sz = s["sizes"]
    out = [f"{sz['partners']} partner subscribed to every type; open-loop sends at each rate for "
           + ", ".join(f"{r:,}/s for {t:g} s" for r, t in zip(sz["rates"], sz["seconds"]))
           + f"; undelivered events are counted after a {n(sz['drain_allowance_s'])} s drain allowance. "
           "Latency: the time stamped into each event at the POST to `/eventRcv` (bridge) or at the "
           "produce (limit, naive: their ingest is a plain producer) to its receipt by the partner. "
           "The raw pipeline posts with 64 requests in flight and the bridge's partner has "
           "maxInFlight 64 (the product's default is 16); the naive bridge posts one at a time.\n\n"]
    rows = []
    for rate, r in s["rates"].items():
        for label, key in (("(a) limit: raw produce→consume→aiohttp", "limit"), ("(b) naive", "naive"),
                           ("(c) bridge", "bridge")):
            d = r.get(key)
            if not d:
                continue
            ratio_l = div(d["p99_ms"], r["limit"]["p99_ms"]) if key == "bridge" else None
            ratio_n = div(d["p99_ms"], r["naive"]["p99_ms"]) if key == "bridge" else None
            rows.append([f"{int(rate):,}/s", label, ms(d["p50_ms"]), ms(d["p95_ms"]), ms(d["p99_ms"]), ms(d["max_ms"]),
                         f"{n(d['received'])}/{n(d['expected'])}", n(d["duplicates"]),
                         x(ratio_l) if key == "bridge" else "", x(ratio_n) if key == "bridge" else ""])
    out.append(table(["rate", "", "p50 ms", "p95 ms", "p99 ms", "max ms", "delivered", "dups",
                      "bridge p99 / limit", "bridge p99 / naive"], rows, "llrrrrrrrr"))
    notes = []
    for rate, r in s["rates"].items():
        b = r.get("bridge")
        if b and "worker_cpu_s" in b:  # CPU over sending + draining (older results divided by sending only)
            notes.append(f"at {int(rate):,}/s the bridge's `/eventRcv` answered in p50 {ms(b['ingest_p50_ms'])} ms / "
                         f"p99 {ms(b['ingest_p99_ms'])} ms; worker CPU {n(b['worker_cpu_pct'])} %, api CPU "
                         f"{n(b['api_cpu_pct'])} % of one core from the first send to the last receipt")
    out.append("\n" + ("; ".join(notes) + ". " if notes else "")
               + "Percentiles are over the events delivered; where some were not delivered in time the true "
               "percentiles are higher.\n")
    out.append(hops_table(s))
    return "".join(out)


HOP_LABELS = (("ingest_ack", "`/eventRcv` answered (client side, per push)"),
              ("event_in_kafka", "event produced to `bridge.events` (ingest)"),
              ("task_produced", "task produced to `bridge.deliveries` (routing, in its transaction)"),
              ("task_committed", "task visible to `read_committed` readers (routing's commit)"),
              ("post_start", "POST to the partner starts (delivery worker)"),
              ("receipt", "partner receives it"))


def hops_table(s: dict[str, Any]) -> str:
    """Per-hop breakdown of the bridge's latency (bench/hops.py), one column pair per rate."""
    rates = [(rate, r["bridge"]) for rate, r in s["rates"].items() if r.get("bridge", {}).get("hops")]
    if not rates:
        return ""
    rows = []
    for key, label in HOP_LABELS:
        row = [label]
        for _, b in rates:
            if key == "ingest_ack":
                row.append(f"{ms(b.get('ingest_p50_ms'))} / {ms(b.get('ingest_p99_ms'))}")
                row.append("")
            elif key == "receipt":
                hop = div(b["p50_ms"], 1) if b.get("p50_ms") is not None else None
                post = b["hops"].get("post_start", {}).get("p50_ms")
                row.append(f"{ms(b['p50_ms'])} / {ms(b['p99_ms'])}")
                row.append(ms(hop - post) if hop is not None and post is not None else DASH)
            else:
                h = b["hops"].get(key, {})
                row.append(f"{ms(h.get('p50_ms'))} / {ms(h.get('p99_ms'))}")
                row.append(f"{ms(h.get('hop_p50_ms'))} / {ms(h.get('hop_p99_ms'))}")
        rows.append(row)
    headers = ["mark (ms since the POST to `/eventRcv`)"]
    for rate, b in rates:
        headers += [f"{int(rate):,}/s: p50 / p99", "hop p50 / p99"]
    n_events = ", ".join(f"{int(rate):,}/s: {n(b['hops'].get('events'))}" for rate, b in rates)
    return ("\n**Where the milliseconds go** (bench/hops.py: a `read_committed` tap on the bridge's topics "
            "with a 1 ms fetch wait stamps each event as it passes; record timestamps are the producers' "
            "clocks, POST start is the outcome's `attempted_at - latency_ms`; same machine, one clock). "
            "Each hop is the difference between consecutive marks of the same event; events with every "
            f"mark: {n_events}.\n\n"
            + table(headers, rows, "l" + "rr" * len(rates)))


def section_s3(s: dict[str, Any]) -> str:
    sz, hl, kl, nv, b, r = s["sizes"], s["limit_http"], s["limit_kafka"], s["naive"], s["bridge"], s["ratios"]
    out = [f"{n(sz['events'])} events of one type, {n(sz['partners'])} partners subscribed to it: "
           f"{n(sz['deliveries'])} deliveries. The raw clients run at the bridge's global connection limit "
           f"({sz['delivery_concurrency']}).\n\n"]
    naive_note = f" (time-boxed at {n(sz['naive_max_seconds'])} s: {n(nv['received'])} deliveries)" \
        if nv["received"] < sz["deliveries"] else ""
    out.append(table(
        ["", "(a) limit", "(b) naive", "(c) bridge", "bridge / limit", "bridge / naive"],
        [["deliveries/s", f"{n(hl['rps'])} ({hl['fastest']} client)", n(nv["deliveries_per_s"]) + naive_note,
          n(b["deliveries_per_s"]), x(r["deliveries_bridge_over_http_limit"]), x(r["deliveries_bridge_over_naive"])],
         ["one event to all partners (s, mean)", DASH,
          n(div(sz["partners"], nv["deliveries_per_s"]), 1),
          n(div(b["fanout_s"], sz["events"]), 2), "", ""],
         ["end-to-end p50 / p99 ms", DASH, DASH, f"{ms(b['e2e_ms']['p50_ms'])} / {ms(b['e2e_ms']['p99_ms'])}", "", ""],
         ["all delivered / lost / duplicates", DASH, DASH,
          f"{'yes' if b['complete'] else 'no'} / {n(b['missing'])} / {n(b['duplicates'])}", "", ""],
         ["worker CPU per delivery", DASH, DASH, f"{b['worker_cpu_ms_per_delivery'] or 0:.2f} ms", "", ""],
         ["Kafka records/s (produce / consume)", f"{n(kl['produce_per_s'])} / {n(kl['consume_per_s'])}", DASH, DASH, "", ""],
         ["partner set-up through the API", DASH, DASH,
          f"{n(b.get('partner_setup_s'), 1)} s ({n(b.get('partner_setup_per_partner_ms'))} ms per partner, 16 at a time)", "", ""]]))
    out.append("\nRaw clients at concurrency " + str(hl["concurrency"]) + ": "
               + ", ".join(f"{k} {n(v['rps_best'])}/s (p99 {ms(v['p99_ms'])} ms)" for k, v in hl["clients"].items()) + ".\n")
    return "".join(out)


def _s4_base_p99(s4: dict[str, Any]) -> float | None:
    """The bridge's baseline p99 the variants are compared with: the mean of the baseline measured
    before and after them (older results have only the first)."""
    base = s4["runs"]["baseline"]
    return base.get("bridge_p99_ms_mean", base["bridge"]["p99_ms"])


def section_s4(s: dict[str, Any]) -> str:
    sz, hl = s["sizes"], s["limit_http"]
    out = [f"{sz['partners']} partners, every one subscribed to every type; {n(sz['events'])} events at "
           f"{n(sz['rate'])} events/s ({n(sz['seconds'])} s). Runs: `baseline` (20 healthy), `slow` (one answers after "
           f"{n(sz['slow_answer_s'])} s; the bridge gives it `timeoutS: 15`, the naive bridge a 15 s client timeout), "
           "`never` (one never answers; default 5 s timeouts). Numbers are for the healthy partners (19, or 20 in the "
           "baseline). Deliveries/s = healthy deliveries / (last receipt − start of sending). The runs follow one "
           "another on a shared machine, so the bridge's baseline is run again after `never` (`baseline again`) and "
           "each variant's p99 is compared with the mean of the two baselines.\n\n"]
    rows = []
    base = s["runs"].get("baseline", {})
    for v, run in s["runs"].items():
        for label, key in (("(b) naive", "naive"), ("(c) bridge", "bridge")):
            d = run[key]
            base_p99 = _s4_base_p99(s) if key == "bridge" else base.get(key, {}).get("p99_ms")
            rows.append([v, label, f"{n(d['received'])}/{n(d['expected'])}", n(d["deliveries_per_s"], 1),
                         ms(d["p50_ms"]), ms(d["p99_ms"]),
                         x(div(d["p99_ms"], base_p99)) if v != "baseline" else "",
                         n(d.get("slow_partner_received")) if v != "baseline" else "",
                         x(run["ratios"]["deliveries_bridge_over_naive"]) if key == "bridge" else ""])
    again = base.get("bridge_again")
    if again:
        rows.append(["baseline again", "(c) bridge", f"{n(again['received'])}/{n(again['expected'])}",
                     n(again["deliveries_per_s"], 1), ms(again["p50_ms"]), ms(again["p99_ms"]), "", "", ""])
    out.append(table(["run", "", "healthy delivered", "healthy deliveries/s", "p50 ms", "p99 ms",
                      "p99 / baseline", "slow partner got", "bridge / naive (deliveries/s)"], rows, "llrrrrrrr"))
    out.append(f"\n(a) raw clients at concurrency {hl['concurrency']} (healthy receiver): "
               + ", ".join(f"{k} {n(v['rps_best'])}/s" for k, v in hl["clients"].items())
               + ". The offered load here is far below that limit on purpose: isolation is measured below saturation.\n")
    return "".join(out)


def section_s5(s: dict[str, Any]) -> str:
    sz = s["sizes"]
    out = ["**In-process, pure functions** (`RegistryView.by_event_type` + `matching.route` + "
           f"`DeliveryTask.encode`, {n(sz['in_process_events'])} realistic events, best of 3):\n\n"]
    rows = []
    for N, row in s["in_process"].items():
        m10, ma = row["match10"], row["match_all"]
        rows.append([n(int(N)), f"{m10['route_us_per_event']:.0f}", f"{m10['route_encode_us_per_event']:.0f}",
                     f"{ma['route_encode_us_per_task']:.0f}", f"{row['index_rebuild_ms']:.2f}",
                     f"{row['app_key_lookup_us']:.0f}"])
    out.append(table(["partners", "route() µs/event (10 match)", "route()+encode µs/event (10 match)",
                      "route()+encode µs/task (all N match)", "by-type index rebuild ms", "appKey lookup µs"], rows))
    first = next(iter(s["in_process"].values()))["match10"]
    out.append(f"\nOf the {first['route_encode_us_per_event']:.0f} µs per event (10 matching partners), matching and "
               f"building the tasks take {first['route_us_per_event']:.0f} µs; `DeliveryTask.encode()` takes "
               f"{first['encode_us_per_task']:.0f} µs per task.\n\n")
    out.append(f"**The worker process** (registry of N partners written to the registry topics; one takes the events' "
               f"types; {n(sz['worker_events'])} events; CPU = utime+stime of the worker / events):\n\n")
    rows = []
    for N, row in s["worker"].items():
        rows.append([n(int(N)), f"{row['worker_cpu_ms_per_event']:.2f}", f"{row['signed_view_ms_median']:.1f}",
                     f"{row['start_to_first_delivery_s']:.1f}", n(row.get("worker_peak_rss_mb")),
                     n(row.get("api_peak_rss_mb")), f"{n(row['delivered'])}/{n(row['events'])}"])
    out.append(table(["partners", "worker CPU ms/event (routing + 1 delivery)", "signed eventSubscriptionView ms (median)",
                      "start → first delivery s", "worker peak RSS MB", "api peak RSS MB", "delivered"], rows))
    r = s["ratios"]
    out.append(f"\nLargest / smallest registry: in-process {x(r['in_process_10match_largest_over_smallest'])}, "
               f"worker {x(r['worker_cpu_largest_over_smallest'])}.\n")
    return "".join(out)


def section_s6(s: dict[str, Any]) -> str:
    sz, nv, b = s["sizes"], s["naive"], s["bridge"]
    out = [f"Scenario 1's workload, smaller: {n(sz['events'])} events × {sz['partners']} partners = "
           f"{n(sz['deliveries'])} deliveries (naive: {n(nv['events'])} events). SIGKILL when "
           f"{sz['kill_at_fraction']:.0%} of the deliveries have arrived, restart at once. (a) has nothing to crash.\n\n"]
    out.append(table(["", "(b) naive", "(c) bridge"],
                     [["expected deliveries", n(nv["expected"]), n(b["expected"])],
                      ["killed after", n((nv.get("killed") or {}).get("at_received")), n(b["killed_after_deliveries"])],
                      ["**lost**", n(nv["lost"]), n(b["lost"])],
                      ["duplicates (same delivery id for the bridge)", n(nv["duplicates"]), n(b["duplicates"])],
                      ["deliveries resumed after the kill (s)", DASH, n(b["resumed_after_s"], 1)]]))
    return "".join(out)


def section_s7(s: dict[str, Any]) -> str:
    sz, w = s["sizes"], s["worker"]
    out = [f"A registry of {n(sz['partners'])} partners (seeded into the registry topics); {n(sz['in_flight'])} of them "
           f"take one event type at a receiver that holds every push {sz['hold_s']:g} s before answering. "
           f"{sz['rounds']} events of that type, one after the other: each is {n(sz['in_flight'])} pushes open at once. "
           "The worker's VmRSS and the receiver's count of held requests sampled every 0.1 s. "
           "(a) and (b) hold no registry and are not run.\n\n"]
    per = w.get("rss_per_push_in_flight_kb")
    out.append(table(["", "(c) bridge worker"],
                     [["RSS, registry loaded, idle", f"{n(w['idle_rss_mb'])} MB"],
                      ["peak RSS while pushes were held", f"{n(w['peak_rss_mb'])} MB"],
                      ["most pushes held at once", n(w["most_held"])],
                      ["RSS per push in flight ((peak − idle) / held)", DASH if per is None else f"{per:.1f} kB"],
                      ["VmHWM (whole life, start-up included)", f"{n(w['vm_hwm_mb'])} MB"],
                      ["delivered / expected", f"{n(w['delivered'])} / {n(w['expected'])}"]]))
    return "".join(out)


SECTIONS = {"s1": ("1. Throughput", section_s1), "s2": ("2. End-to-end latency at fixed rates", section_s2),
            "s3": ("3. Fan-out: one event type, 1,000 partners", section_s3),
            "s4": ("4. Isolation: one slow partner among 20", section_s4),
            "s5": ("5. Subscription scale: routing cost per event", section_s5),
            "s6": ("6. Crash: worker SIGKILLed mid-run and restarted", section_s6),
            "s7": ("7. Memory: worker RSS at 10,000 partners, 1,000 pushes in flight", section_s7)}


def headline(res: dict[str, Any]) -> str:
    sc = res["scenarios"]
    rows = []
    s1 = sc.get("s1", {})
    if "bridge" in s1:
        rows.append(["1 throughput: deliveries/s", n(s1["limit_http"]["rps"]), n(s1["naive"]["deliveries_per_s"]),
                     n(s1["bridge"]["deliveries_per_s"]), x(s1["ratios"]["deliveries_bridge_over_http_limit"]),
                     x(s1["ratios"]["deliveries_bridge_over_naive"])])
        rows.append(["1 throughput: events/s ingested", n(s1["limit_kafka"]["produce_per_s"]), DASH,
                     n(s1["bridge"]["ingest_events_per_s"]), x(s1["ratios"]["ingest_bridge_over_kafka_produce"]), DASH])
    for rate, r in sc.get("s2", {}).get("rates", {}).items():
        if "bridge" in r:
            rows.append([f"2 latency p99 ms at {int(rate):,} events/s", ms(r["limit"]["p99_ms"]), ms(r["naive"]["p99_ms"]),
                         ms(r["bridge"]["p99_ms"]) + (" (incomplete)" if r["bridge"]["missing"] else ""),
                         x(div(r["bridge"]["p99_ms"], r["limit"]["p99_ms"])),
                         x(div(r["bridge"]["p99_ms"], r["naive"]["p99_ms"]))])
    s3 = sc.get("s3", {})
    if "bridge" in s3:
        rows.append(["3 fan-out 1,000 partners: deliveries/s", n(s3["limit_http"]["rps"]), n(s3["naive"]["deliveries_per_s"]),
                     n(s3["bridge"]["deliveries_per_s"]), x(s3["ratios"]["deliveries_bridge_over_http_limit"]),
                     x(s3["ratios"]["deliveries_bridge_over_naive"])])
    s4 = sc.get("s4", {})
    for v in ("baseline", "slow", "never"):
        run = s4.get("runs", {}).get(v)
        if run:
            rows.append([f"4 isolation ({v}): healthy deliveries/s", n(s4["limit_http"]["rps"]),
                         n(run["naive"]["deliveries_per_s"], 1), n(run["bridge"]["deliveries_per_s"], 1),
                         x(run["ratios"]["deliveries_bridge_over_http_limit"]),
                         x(run["ratios"]["deliveries_bridge_over_naive"])])
            rows.append([f"4 isolation ({v}): healthy p99 ms", DASH, ms(run["naive"]["p99_ms"]), ms(run["bridge"]["p99_ms"]),
                         DASH, x(run["ratios"]["p99_bridge_over_naive"])])
    s5 = sc.get("s5", {})
    if "worker" in s5:
        sizes = list(s5["worker"])
        rows.append([f"5 worker CPU ms/event, {n(int(sizes[0]))} → {n(int(sizes[-1]))} partners", DASH, DASH,
                     f"{s5['worker'][sizes[0]]['worker_cpu_ms_per_event']:.2f} → {s5['worker'][sizes[-1]]['worker_cpu_ms_per_event']:.2f}",
                     DASH, DASH])
    s6 = sc.get("s6", {})
    if "bridge" in s6:
        rows.append(["6 crash: lost / duplicates", DASH, f"{n(s6['naive']['lost'])} / {n(s6['naive']['duplicates'])}",
                     f"{n(s6['bridge']['lost'])} / {n(s6['bridge']['duplicates'])}", DASH, DASH])
    return table(["scenario: metric", "(a) limit", "(b) naive", "(c) bridge", "bridge / limit", "bridge / naive"], rows)


def rss_table(res: dict[str, Any]) -> str:
    procs: list[str] = []
    for s in res["scenarios"].values():
        for p in s.get("rss", {}):
            if p not in procs:
                procs.append(p)
    names = [k for k in res["scenarios"] if "rss" in res["scenarios"][k]]
    rows = [[p] + [n(res["scenarios"][s]["rss"].get(p, {}).get("peak_rss_mb")) for s in names] for p in procs]
    return table(["peak RSS, MB"] + names, rows)


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def plot(res: dict[str, Any], path: Path) -> bool:
    s2 = res["scenarios"].get("s2", {})
    rates = s2.get("rates")
    if not rates:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(rates), figsize=(5.2 * len(rates), 4.6), sharey=True)
    if len(rates) == 1:
        axes = [axes]
    styles = {"limit": ("(a) limit: raw Kafka + aiohttp", "#2a9d8f"), "naive": ("(b) naive bridge", "#e9c46a"),
              "bridge": ("(c) bridge", "#e63946")}
    for ax, (rate, r) in zip(axes, rates.items()):
        for key, (label, color) in styles.items():
            d = r.get(key)
            if not d or not d.get("quantiles_ms"):
                continue
            q = d["quantiles_ms"]
            xs = [100 * i / (len(q) - 1) for i in range(len(q))]
            delivered = d["received"] / d["expected"] if d["expected"] else 1
            xs = [v * delivered for v in xs]  # undelivered events sit above the curve's end
            suffix = f" ({100 * (1 - delivered):.0f} % late)" if delivered < 0.999 else ""
            ax.plot(xs, [max(v, 0.1) for v in q], label=label + suffix, color=color, lw=1.8)
            for p, marker in ((50, "o"), (95, "s"), (99, "^")):
                val = d.get(f"p{p}_ms")
                if val:
                    ax.plot([p * delivered], [max(val, 0.1)], marker=marker, color=color, ms=5)
        ax.set_yscale("log")
        ax.set_xlim(0, 100)
        ax.set_title(f"{int(rate):,} events/s")
        ax.set_xlabel("percentile of events  (● p50  ■ p95  ▲ p99)")
        ax.grid(True, which="both", alpha=0.3)
        ax.axhline(100, color="grey", ls="--", lw=0.8)
        ax.legend(loc="best", fontsize=7.5)
    axes[0].set_ylabel("end-to-end latency, ms (log)")
    machine = res["meta"]["machine"]
    fig.suptitle(f"Platform POST → partner receipt, 1 partner ({machine['cores']} cores, "
                 f"{res['meta']['started'][:10]}, {res['meta']['mode']} sizes)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# the document
# --------------------------------------------------------------------------------------------


def profiles_section() -> str:
    files = sorted(PROFILES.glob("*.md")) if PROFILES.exists() else []
    if not files:
        return "_No profile recorded: run `python -m bench --only s1 --profile` with py-spy installed._\n"
    return "\n".join(f.read_text() for f in files)


def save_profiles(logs: Path) -> None:
    """Summaries of this run's py-spy files into bench/profiles/ (committed, included in the report)."""
    PROFILES.mkdir(exist_ok=True)
    for stale in PROFILES.glob("*.md"):
        stale.unlink()
    for raw in sorted(logs.glob("*/*.pyspy.txt")):
        name = raw.name.replace(".pyspy.txt", "")
        role = "api" if name.endswith("-api") else "worker"
        when = dt.datetime.fromtimestamp(raw.stat().st_mtime).astimezone().strftime("%Y-%m-%d %H:%M %Z")
        body = summarize(raw)
        (PROFILES / f"{name}.md").write_text(
            f"#### `{name}` — py-spy of the {role} during scenario {name[:2].lstrip('s')} ({when})\n\n"
            f"Recorded with `python -m bench --only {name.split('-')[0]} --profile` "
            f"(`py-spy record --format raw -r 50 --nonblocking --pid <{role}>`).\n\n{body}\n")


BEFORE = Path(__file__).resolve().parent / "before-issue15.json"
#: Written by hand (what the numbers mean, the levers' before/after, what is left): it names
#: the run it refers to, so that a later run does not pass it off as its own.
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


def before_note(res: dict[str, Any]) -> str:
    meta = res["before"].get("meta", {})
    return (f"`{meta.get('command', 'python -m bench')}` on {meta.get('started', '?')} with the code before "
            "issue #15's changes (commit 3874af8), same machine; its results are kept in "
            "`bench/before-issue15.json`. Scenarios it did not run show a dash.")


def document(res: dict[str, Any], png_name: str | None) -> str:
    meta = res["meta"]
    m = meta["machine"]
    started = meta["started"]
    mode = meta["mode"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`{meta.get('command', 'python -m bench').strip()}`) on **{started}**, "
        f"in {meta['seconds'] / 60:.1f} minutes. Machine: **{m['cores']} cores** ({m['cpu'] or 'unknown CPU'}), "
        f"{m['memory']}, {m['platform']}, Python {m['python']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in m['load_avg_at_start'])} (a shared machine: other work ran beside this, "
        "so single numbers are noisy — compare within a run, the point of running (a), (b) and (c) side by side).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".",
        "",
    ]
    if mode.startswith("quick"):
        lines += ["**Sizes are scaled down** from the issue's (which take well over an hour on this machine) so "
                  "that the whole run stays under 15 minutes; `python -m bench --full` uses the issue's sizes. Sizes "
                  "of this run:", ""]
    else:
        lines += ["Sizes (`--full`, the issue's):", ""]
    lines.append(table(["scenario", "sizes"], [[k, ", ".join(f"{a}={b}" for a, b in v.items())]
                                                for k, v in meta["sizes"].items()], "ll"))
    lines += [
        "Every scenario runs, in the same run: **(a)** the limit of this machine for the same work (raw "
        "confluent-kafka produce + consume of the same records; `bench.http_clients.measure()` posting the same "
        "bodies to the same receiver at the same concurrency with aiohttp's client, httpx's default transport "
        "and httpx over the aiohttp transport the bridge uses — the limit is the fastest); **(b)** the naive "
        "bridge of `bench/naive.py` (one consumer; for each event, for each subscribed partner, "
        "`await client.post(...)`); **(c)** the bridge: `python -m bridge api` + `python -m bridge worker` "
        "subprocesses on a dedicated broker, partners created with the admin API and subscribed with signed "
        "Artemis calls, pushes POSTed to `/eventRcv`, receivers in a separate process timing each receipt "
        "against the send time stamped into the event. Results as JSON: `bench/out/` (not committed).",
        "",
        "## Goals of issue #15",
        "",
        ("Before: " + before_note(res) + "\n" if res.get("before") else ""),
        goal_table(res, res.get("before")),
        "## Goals of issue #7",
        "",
        table(["goal (not a test assertion)", "measured", ""], goals(res), "llc"),
        "## Headline numbers",
        "",
        headline(res),
    ]
    if png_name:
        lines += ["", f"![End-to-end latency percentiles]({png_name})", ""]
    for key, (title, fn) in SECTIONS.items():
        if key not in res["scenarios"]:
            continue
        s = res["scenarios"][key]
        lines += [f"## {title}", ""]
        lines.append(_failed(s) or fn(s))
        if "seconds" in s:
            lines.append(f"_Scenario time: {s['seconds']:.0f} s._\n")
    lines += ["## Peak RSS per process", "",
              "VmHWM from `/proc/<pid>/status` for the processes started for the scenario (max over restarts); "
              "for the broker and the driver, which live through the whole run, the highest VmRSS sampled "
              "during the scenario (every 0.25 s).", "", rss_table(res),
              # What the numbers mean is written by hand (a generated explanation goes stale
              # as soon as the cause it names is fixed); the report gives tables, plots, profiles.
              "## Profiles of the worker and the api", "", profiles_section(),
              *([ANALYSIS.read_text()] if ANALYSIS.exists() else []),
              "## How to run", "",
              "```",
              "make bench                         # = python -m bench --profile: every scenario, quick sizes (< 15 min)",
              "python -m bench --full             # the issue's sizes (> 1 h on 2 cores)",
              "python -m bench --only s1,s4       # some scenarios (report to bench/out/benchmarks.md)",
              "python -m bench --only s1 --profile  # + py-spy of the worker and the api (make bench does it)",
              "python -m bench.http_clients       # the raw HTTP client comparison alone",
              "python -m bench.report bench/out/latest.json out.md   # re-render a report",
              "```", "",
              "Needs what `make test` needs (Java 17+, Maven for the first Kafka fetch) and matplotlib for the "
              "plot. The broker runs on 127.0.0.1:29792 from a temporary directory; every process is stopped at "
              "the end; logs are in `" + meta.get("logs", "bench/out/logs") + "`.", ""]
    return "\n".join(lines)


def write(res: dict[str, Any], target: Path) -> list[Path]:
    target.parent.mkdir(parents=True, exist_ok=True)
    png = target.with_name(target.stem + "-latency.png")
    has_png = plot(res, png)
    if "before" not in res and BEFORE.exists():
        res = {**res, "before": json.loads(BEFORE.read_text())}
    target.write_text(document(res, png.name if has_png else None))
    return [target, png] if has_png else [target]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    src = Path(args[0]) if args else OUT / "latest.json"
    dst = Path(args[1]) if len(args) > 1 else OUT / "benchmarks.md"
    for path in write(json.loads(src.read_text()), dst):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


