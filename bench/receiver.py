"""The partner receivers of the benchmarks: one aiohttp server in its own process.

Every partner of a scenario is a path on this one server (``/p/<group>/<partner>``), so 1,000
partners need one process and one port, and the bridge still sees 1,000 distinct endpoints (its
circuit breakers are per ``scheme://host:port/path``). Paths (all POST):

- ``/p/<group>/<name>``          answer 200 at once;
- ``/slow/<s>/<group>/<name>``   answer 200 after ``s`` seconds (``/_bench/count`` says how many
  such requests are being held at that moment);
- ``/never/<group>/<name>``      never answer (the handler sleeps an hour; the client times out).

Each request is recorded under ``<group>/<name>``: the time it arrived and, read from the body
with a byte search (no JSON parse, so the receiver costs the same for every sender), the
``benchSeq`` and ``benchTs`` fields the load generator put into the event object. The bridge
passes event objects through verbatim, so ``arrival - benchTs`` is the end-to-end latency from the
platform's POST (or, for the raw pipelines, the produce) to the partner's receipt.

Control (GET/POST ``/_bench/...``): ``stats`` (JSON summary of the groups whose name starts with
``prefix``, optionally split by partner-name prefixes), ``reset``. Run as
``python -m bench.receiver --port-file F`` (it writes its port to F when it is listening).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_SEQ = re.compile(rb'"benchSeq":(\d+)')
_TS = re.compile(rb'"benchTs":([0-9.eE+-]+)')


@dataclass
class Bucket:
    """What one partner endpoint received."""

    count: int = 0
    #: Receipts per benchSeq (capped at 255); grows as sequence numbers arrive.
    seen: bytearray = field(default_factory=bytearray)
    dups: int = 0
    latencies: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    #: Arrival time of each latency sample (same order).
    arrivals: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    first: float = 0.0
    last: float = 0.0
    no_seq: int = 0


class Recorder:
    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        #: Requests to ``/slow/`` paths being held right now (read, not yet answered).
        self.held = 0

    def record(self, key: str, body: bytes, now: float) -> None:
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(first=now)
        bucket.count += 1
        bucket.last = now
        seqs = [int(m.group(1)) for m in _SEQ.finditer(body)]  # a batched push carries several
        if not seqs:
            bucket.no_seq += 1
        for seq in seqs:
            seen = bucket.seen
            if seq >= len(seen):
                seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
            if seen[seq]:
                bucket.dups += 1
                if seen[seq] < 255:
                    seen[seq] += 1
            else:
                seen[seq] = 1
        for t in _TS.finditer(body):
            bucket.latencies.append(now - float(t.group(1)))
            bucket.arrivals.append(now)

    def stats(self, prefix: str, split: list[str], expect: int | None, partners: int | None,
              quantiles: int, series: int = 0) -> dict[str, Any]:
        groups: dict[str, list[Bucket]] = {"all": []}
        names: dict[str, list[str]] = {"all": []}
        for s in split:
            groups[s] = []
            names[s] = []
        for key, bucket in self.buckets.items():
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            groups["all"].append(bucket)
            names["all"].append(rest)
            for s in split:
                if rest.startswith(s):
                    groups[s].append(bucket)
                    names[s].append(rest)
        out = {g: _summary(b, expect, partners if g == "all" else None, quantiles)
               for g, b in groups.items()}
        if series:
            out["all"]["series"] = _series(groups["all"], series)
        return out


def _pct(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def _summary(buckets: list[Bucket], expect: int | None, partners: int | None,
             quantiles: int) -> dict[str, Any]:
    lat: list[float] = []
    count = dups = unique = missing = no_seq = 0
    first = min((b.first for b in buckets), default=0.0)
    last = max((b.last for b in buckets), default=0.0)
    for b in buckets:
        count += b.count
        dups += b.dups
        no_seq += b.no_seq
        if expect is not None:
            window = b.seen[:expect]
            got = expect - window.count(0) if len(window) >= expect else (len(window) - window.count(0))
            unique += got
            missing += expect - got
        else:
            unique += len(b.seen) - b.seen.count(0)
        lat.extend(b.latencies)
    if expect is not None and partners is not None and partners > len(buckets):
        missing += (partners - len(buckets)) * expect  # endpoints that got nothing at all
    lat.sort()
    out: dict[str, Any] = {
        "endpoints": len(buckets), "received": count, "unique": unique, "duplicates": dups,
        "missing": missing if expect is not None else None, "no_seq": no_seq,
        "first": first, "last": last,
        "p50_ms": _ms(_pct(lat, 50)), "p95_ms": _ms(_pct(lat, 95)), "p99_ms": _ms(_pct(lat, 99)),
        "max_ms": _ms(lat[-1] if lat else None), "mean_ms": _ms(sum(lat) / len(lat) if lat else None),
    }
    if quantiles and lat:
        # The latency distribution as `quantiles`+1 evenly spaced quantiles, for plots.
        out["quantiles_ms"] = [round(lat[min(len(lat) - 1, int(i * (len(lat) - 1) / quantiles))] * 1e3, 3)
                               for i in range(quantiles + 1)]
    return out


def _series(buckets: list[Bucket], points: int) -> list[list[float]]:
    """Up to ``points`` [arrival time, latency ms] pairs per time slice (the slice's max), in time order."""
    pairs = sorted((a, lat) for b in buckets for a, lat in zip(b.arrivals, b.latencies))
    if not pairs:
        return []
    t0, t1 = pairs[0][0], pairs[-1][0]
    width = max((t1 - t0) / points, 1e-6)
    slices: dict[int, list[float]] = {}
    for a, lat in pairs:
        i = int((a - t0) / width)
        cur = slices.get(i)
        if cur is None or lat > cur[1]:
            slices[i] = [round(a, 3), lat]
    return [[a, round(lat * 1e3, 2)] for a, lat in (slices[i] for i in sorted(slices))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1e3, 3)


def build_app(recorder: Recorder) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        body = await request.read()
        recorder.record(request.match_info["key"], body, time.time())
        return web.Response(text="OK")

    async def slow(request: web.Request) -> web.Response:
        body = await request.read()
        recorder.held += 1
        try:
            await asyncio.sleep(float(request.match_info["s"]))
        finally:
            recorder.held -= 1
        recorder.record(request.match_info["key"], body, time.time())
        return web.Response(text="OK")

    async def never(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3600)
        return web.Response(text="OK")

    async def stats(request: web.Request) -> web.Response:
        q = request.query
        split = [s for s in q.get("split", "").split(",") if s]
        expect = int(q["expect"]) if q.get("expect") else None
        partners = int(q["partners"]) if q.get("partners") else None
        result = recorder.stats(q.get("prefix", ""), split, expect, partners,
                                int(q.get("quantiles", "0")), int(q.get("series", "0")))
        return web.json_response(result)

    async def count(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        n = sum(b.count for k, b in recorder.buckets.items() if k.startswith(prefix))
        return web.json_response({"received": n, "held": recorder.held, "time": time.time()})

    async def reset(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        for key in [k for k in recorder.buckets if k.startswith(prefix)]:
            del recorder.buckets[key]
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/_bench/stats", stats)
    app.router.add_get("/_bench/count", count)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_post("/p/{key:.+}", ok)
    app.router.add_post("/slow/{s}/{key:.+}", slow)
    app.router.add_post("/never/{key:.+}", never)
    return app


async def serve(port_file: str | None) -> None:
    recorder = Recorder()
    runner = web.AppRunner(build_app(recorder), access_log=None, handle_signals=True)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, backlog=4096).start()
    port = sock.getsockname()[1]
    if port_file:
        with open(port_file + ".tmp", "w") as fh:
            fh.write(str(port))
        import os

        os.replace(port_file + ".tmp", port_file)
    else:
        print(port, flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("--port-file")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port_file))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
