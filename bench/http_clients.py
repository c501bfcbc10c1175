"""POST throughput of async HTTP clients against a local aiohttp receiver.

Compares, at a few concurrency levels, the clients the delivery worker could use:

* ``aiohttp``        aiohttp's own ``ClientSession`` (one session, keep-alive,
                     ``TCPConnector(limit=concurrency)``);
* ``httpx``          ``httpx.AsyncClient`` with its default transport (httpcore + anyio),
                     ``Limits(max_connections=concurrency, max_keepalive_connections=concurrency)``;
* ``httpx-aiohttp``  ``httpx.AsyncClient`` API on the httpx-aiohttp transport
                     (``httpx_aiohttp.HttpxAiohttpClient``, same limits).

Every request POSTs the same ~500-byte ``OnEventNotify``-like JSON envelope with
``Content-Type: application/json`` and reads the whole response body. The receiver is an aiohttp
web server in a separate (spawned) process on ``127.0.0.1`` with a free port that answers
``200 OK`` at once, so client and server share neither event loop nor GIL. Only loopback traffic.

Per measurement: a warm-up (default 200 requests, same concurrency, opens the pool), then a
fixed number of requests (default 3000) pulled from a shared counter by N concurrent workers.
Every (client, concurrency) cell runs ``--repeats`` times (default 2), interleaved
(rep 1 of every cell, then rep 2 ...); the table shows the best and the median req/s and the
median of the runs' p50/p99 latencies, plus the CPU used by the client process and by the
receiver process (100 % = one core).

``check_timeout()`` verifies the error behaviour the delivery worker relies on, per transport:
per-request ``timeout=0.5`` against a receiver path that sleeps 2 s must raise
``httpx.TimeoutException`` (and the pool must still work afterwards), a refused connection and an
unresolvable host must raise ``httpx.ConnectError``. It also records (informational) what a
server that closes the connection without answering raises, and what a pool timeout raises.
Transports checked: ``httpx-aiohttp`` as shipped, ``httpx-aiohttp+remap`` (the same transport
with :class:`DeliveryAiohttpTransport`'s exception fix-up) and the default ``httpx`` transport.

Usage (from the project root)::

    /tmp/venvtest/bin/python -m bench.http_clients [--requests N] [--concurrency 1,8,32]
                                                   [--json out.json]

Importable: ``measure(...)`` returns a list of dicts (one per cell), ``check_timeout()`` a list of
dicts (one per transport and check). Both are synchronous (they call ``asyncio.run``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aiohttp
import httpx

from bridge.delivery.sender import DeliveryTransport
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

CLIENTS: tuple[str, ...] = ("aiohttp", "httpx", "httpx-aiohttp")
BASELINE = "aiohttp"
DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 8, 32)
DEFAULT_REQUESTS = 3000
DEFAULT_WARMUP = 200
DEFAULT_REPEATS = 2
#: Hard cap on one measured run; a run hitting it is reported with ``truncated``.
DEFAULT_MAX_SECONDS_PER_RUN = 15.0
#: Whole-benchmark budget: runs that would start after it are skipped (and reported).
DEFAULT_BUDGET_SECONDS = 170.0
#: Client-side timeout for benchmark requests (the receiver answers at once).
REQUEST_TIMEOUT = 10.0

SLOW_SECONDS = 2.0
UNRESOLVABLE_URL = "http://does-not-exist.invalid/notify"  # RFC 6761: never resolves

ENVELOPE: dict[str, Any] = {
    "method": "OnEventNotify",
    "params": {
        "ability": "event_acs",
        "sendTime": "2024-05-14T10:21:33.123+08:00",
        "events": [
            {
                "eventId": "9f3a6c2e-4b1d-4e8a-a0c5-6d2f1b7e9c40",
                "eventType": 196893,
                "status": 0,
                "eventLvl": 1,
                "timeout": 0,
                "srcIndex": "a1b2c3d4e5f64789abcdef0123456789",
                "srcType": "door",
                "srcName": "Main Entrance Door 1",
                "happenTime": "2024-05-14T10:21:32.987+08:00",
                "data": {
                    "ExtEventCardNo": "3201934719",
                    "ExtEventPersonNo": "10042",
                    "ExtEventInOut": 1,
                    "ExtEventDoorID": 1,
                    "ExtEventPictureURL": "/pic?=d7ei703i10cd*73a-c61e4b--2f5c8e0a5b6dei",
                },
            }
        ],
    },
}
BODY: bytes = json.dumps(ENVELOPE, separators=(",", ":")).encode()
HEADERS = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------------------------
# Receiver (separate process)
# --------------------------------------------------------------------------------------------


def _receiver_main(conn: Any, host: str) -> None:
    """Entry point of the receiver process: serve, send the port back, run until terminated."""
    asyncio.run(_receiver_serve(conn, host))


async def _receiver_serve(conn: Any, host: str) -> None:
    from aiohttp import web

    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(float(request.query.get("s", SLOW_SECONDS)))
        return web.Response(text="OK")

    async def drop(request: web.Request) -> web.StreamResponse:
        await request.read()
        assert request.transport is not None
        request.transport.abort()  # close the connection without any response bytes
        raise asyncio.CancelledError  # nothing left to answer on

    app = web.Application()
    app.router.add_route("*", "/notify", ok)
    app.router.add_route("*", "/slow", slow)
    app.router.add_route("*", "/drop", drop)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    await web.SockSite(runner, sock, backlog=1024).start()
    conn.send(sock.getsockname()[1])
    conn.close()
    await asyncio.Event().wait()  # until the parent terminates us


@contextlib.contextmanager
def receiver(host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """Run the receiver in a spawned process; yield ``(base_url, pid)``."""
    ctx = multiprocessing.get_context("spawn")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_receiver_main, args=(child_conn, host), daemon=True)
    proc.start()
    child_conn.close()
    try:
        if not parent_conn.poll(30):
            raise RuntimeError("receiver process did not start within 30 s")
        port = parent_conn.recv()
        yield f"http://{host}:{port}", proc.pid  # type: ignore[misc]
    finally:
        parent_conn.close()
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process (None if it is gone)."""
    import psutil  # the bench extra's

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------

PostFn = Callable[[str], Awaitable[int]]


def _httpx_limits(concurrency: int) -> httpx.Limits:
    # max_keepalive_connections defaults to 20; at concurrency 32 that would close and reopen
    # 12 connections all the time, so keep the whole pool alive.
    return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)


async def _open_client(kind: str, concurrency: int, body: bytes | None = None
                       ) -> tuple[PostFn, Callable[[], Awaitable[None]]]:
    """Return ``(post(url) -> status, aclose())`` for one client kind (posting ``body``, default BODY)."""
    payload = BODY if body is None else body
    if kind == "aiohttp":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        )

        async def post_aiohttp(url: str) -> int:
            async with session.post(url, data=payload, headers=HEADERS) as resp:
                await resp.read()
                return resp.status

        return post_aiohttp, session.close

    if kind == "httpx":
        client: httpx.AsyncClient = httpx.AsyncClient(
            limits=_httpx_limits(concurrency), timeout=REQUEST_TIMEOUT, trust_env=False
        )
    elif kind == "httpx-aiohttp":
        client = HttpxAiohttpClient(
            limits=_httpx_limits(concurrency), timeout=REQUEST_TIMEOUT, trust_env=False
        )
    else:
        raise ValueError(f"unknown client {kind!r}; choose from {', '.join(CLIENTS)}")

    async def post_httpx(url: str) -> int:
        resp = await client.post(url, content=payload, headers=HEADERS)  # reads the body
        return resp.status_code

    return post_httpx, client.aclose


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence (NaN if empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(rank) - 1]


async def _drive(
    post: PostFn, url: str, total: int, concurrency: int, deadline: float
) -> tuple[list[float], int, int]:
    """N workers pull from a shared counter until ``total`` requests are issued.

    Returns (latencies in seconds of successful requests, error count, issued count).
    """
    issued = 0
    errors = 0
    latencies: list[float] = []
    perf = time.perf_counter

    async def worker() -> None:
        nonlocal issued, errors
        while issued < total and perf() < deadline:
            issued += 1  # single-threaded loop: no await between test and increment
            t0 = perf()
            try:
                status = await post(url)
            except Exception:  # noqa: BLE001 - counted, the benchmark keeps going
                errors += 1
                continue
            if status == 200:
                latencies.append(perf() - t0)
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, issued


async def _run_once(
    kind: str,
    url: str,
    concurrency: int,
    requests: int,
    warmup: int,
    max_seconds: float,
    server_pid: int | None,
    body: bytes | None = None,
) -> dict[str, Any]:
    post, aclose = await _open_client(kind, concurrency, body)
    try:
        await _drive(post, url, warmup, concurrency, time.perf_counter() + max_seconds)
        srv0 = _proc_cpu_seconds(server_pid) if server_pid else None
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        latencies, errors, issued = await _drive(post, url, requests, concurrency, t0 + max_seconds)
        elapsed = time.perf_counter() - t0
        cpu1 = time.process_time()
        srv1 = _proc_cpu_seconds(server_pid) if server_pid else None
    finally:
        await aclose()
    latencies.sort()
    return {
        "client": kind,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "truncated": issued < requests,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": _percentile(latencies, 50) * 1e3,
        "p99_ms": _percentile(latencies, 99) * 1e3,
        "client_cpu_pct": 100 * (cpu1 - cpu0) / elapsed if elapsed > 0 else float("nan"),
        "server_cpu_pct": (
            100 * (srv1 - srv0) / elapsed
            if srv0 is not None and srv1 is not None and elapsed > 0
            else None
        ),
    }


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def measure(
    requests: int = DEFAULT_REQUESTS,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    clients: Sequence[str] = CLIENTS,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    max_seconds_per_run: float = DEFAULT_MAX_SECONDS_PER_RUN,
    budget_seconds: float | None = DEFAULT_BUDGET_SECONDS,
    base_url: str | None = None,
    progress: Callable[[str], None] | None = None,
    body: bytes | None = None,
    path: str = "/notify",
    server_pid: int | None = None,
) -> list[dict[str, Any]]:
    """Measure every (client, concurrency) cell ``repeats`` times, interleaved.

    Starts its own receiver process unless ``base_url`` is given (then server CPU is measured
    only when ``server_pid`` names the receiver's process). ``body`` (default :data:`BODY`) is
    POSTed to ``base_url + path`` (default ``/notify``). Returns one dict per cell, in (concurrency, client) order::

        {"client", "concurrency", "rps_best", "rps_median", "p50_ms", "p99_ms",
         "p50_ms_best_run", "p99_ms_best_run", "client_cpu_pct", "server_cpu_pct",
         "errors", "truncated", "runs": [per-run dicts], "skipped_runs"}

    ``p50_ms``/``p99_ms``/CPU are medians over the runs. Must not be called from a running
    event loop.
    """
    for kind in clients:
        if kind not in CLIENTS:
            raise ValueError(f"unknown client {kind!r}; choose from {', '.join(CLIENTS)}")
    with contextlib.ExitStack() as stack:
        if base_url is None:
            base_url, server_pid = stack.enter_context(receiver())
        url = base_url.rstrip("/") + path
        cells = [(c, k) for c in concurrency for k in clients]
        runs: dict[tuple[int, str], list[dict[str, Any]]] = {cell: [] for cell in cells}
        skipped: dict[tuple[int, str], int] = {cell: 0 for cell in cells}
        start = time.perf_counter()
        for rep in range(repeats):
            for conc, kind in cells:
                if budget_seconds is not None and time.perf_counter() - start > budget_seconds:
                    skipped[(conc, kind)] += 1
                    continue
                result = asyncio.run(
                    _run_once(kind, url, conc, requests, warmup, max_seconds_per_run, server_pid, body)
                )
                result["repeat"] = rep + 1
                runs[(conc, kind)].append(result)
                if progress:
                    progress(
                        f"rep {rep + 1}/{repeats} {kind:<14} c={conc:<3} "
                        f"{result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                        f"p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}"
                    )

    out: list[dict[str, Any]] = []
    for conc, kind in cells:
        cell_runs = runs[(conc, kind)]
        if not cell_runs:
            out.append({"client": kind, "concurrency": conc, "runs": [],
                        "skipped_runs": skipped[(conc, kind)]})
            continue
        best = max(cell_runs, key=lambda r: r["rps"])
        out.append(
            {
                "client": kind,
                "concurrency": conc,
                "rps_best": best["rps"],
                "rps_median": _median([r["rps"] for r in cell_runs]),
                "p50_ms": _median([r["p50_ms"] for r in cell_runs]),
                "p99_ms": _median([r["p99_ms"] for r in cell_runs]),
                "p50_ms_best_run": best["p50_ms"],
                "p99_ms_best_run": best["p99_ms"],
                "client_cpu_pct": _median([r["client_cpu_pct"] for r in cell_runs]),
                "server_cpu_pct": _median([r["server_cpu_pct"] for r in cell_runs]),
                "errors": sum(r["errors"] for r in cell_runs),
                "truncated": any(r["truncated"] for r in cell_runs),
                "runs": cell_runs,
                "skipped_runs": skipped[(conc, kind)],
            }
        )
    return out


def ratios(results: Sequence[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """req/s of every non-baseline client divided by the baseline's, per concurrency."""
    by_cell = {(r["client"], r["concurrency"]): r for r in results if r.get("runs")}
    out = []
    for r in results:
        base = by_cell.get((baseline, r["concurrency"]))
        if r["client"] == baseline or not r.get("runs") or base is None:
            continue
        out.append(
            {
                "client": r["client"],
                "baseline": baseline,
                "concurrency": r["concurrency"],
                "rps_median_ratio": r["rps_median"] / base["rps_median"],
                "rps_best_ratio": r["rps_best"] / base["rps_best"],
                "p50_ratio": r["p50_ms"] / base["p50_ms"],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# Error-behaviour checks
# --------------------------------------------------------------------------------------------


# The bridge's own transport (httpx over aiohttp with httpx's exception classes restored).
DeliveryAiohttpTransport = DeliveryTransport


CHECK_TRANSPORTS: tuple[str, ...] = ("httpx-aiohttp", "httpx-aiohttp+remap", "httpx")


def _check_client(kind: str, timeout: float = REQUEST_TIMEOUT, max_connections: int = 8) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if kind == "httpx-aiohttp":
        return HttpxAiohttpClient(limits=limits, timeout=timeout, trust_env=False)
    if kind == "httpx-aiohttp+remap":
        return httpx.AsyncClient(transport=DeliveryAiohttpTransport(limits=limits), timeout=timeout)
    if kind == "httpx":
        return httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False)
    raise ValueError(f"unknown transport {kind!r}; choose from {', '.join(CHECK_TRANSPORTS)}")


def _free_closed_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


async def _check_one(
    client: httpx.AsyncClient,
    name: str,
    url: str,
    expected: type[BaseException] | None,
    timeout: float | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"content": BODY, "headers": HEADERS}
    if timeout is not None:
        kwargs["timeout"] = timeout
    t0 = time.perf_counter()
    got: BaseException | None = None
    status: int | None = None
    try:
        status = (await client.post(url, **kwargs)).status_code
    except Exception as exc:  # noqa: BLE001 - classified below
        got = exc
    elapsed = time.perf_counter() - t0
    if expected is None:  # "must succeed" (or informational when name says so)
        ok = got is None and status == 200
    else:
        ok = isinstance(got, expected)
    if ok and max_seconds is not None and elapsed > max_seconds:
        ok = False
    return {
        "check": name,
        "expected": "200 OK" if expected is None else f"{expected.__module__}.{expected.__qualname__}",
        "got": (
            f"{type(got).__module__}.{type(got).__qualname__}" if got is not None else f"status {status}"
        ),
        "cause": repr(got.__cause__)[:160] if got is not None and got.__cause__ is not None else None,
        "message": str(got)[:160] if got is not None else None,
        "elapsed_ms": round(elapsed * 1e3, 1),
        "ok": ok,
    }


async def _check_transport(kind: str, base_url: str, dns: bool) -> list[dict[str, Any]]:
    base = base_url.rstrip("/")
    results: list[dict[str, Any]] = []
    # Client default timeout 10 s: the per-request timeout=0.5 must win.
    async with _check_client(kind, timeout=REQUEST_TIMEOUT) as client:
        results.append(await _check_one(client, "warm-up POST /notify", base + "/notify", None))
        results.append(
            await _check_one(
                client, f"POST /slow (sleeps {SLOW_SECONDS:g} s), timeout=0.5",
                base + "/slow", httpx.TimeoutException, timeout=0.5, max_seconds=1.5,
            )
        )
        results.append(
            await _check_one(
                client, "per-request timeout=httpx.Timeout(0.5, connect=2)",
                base + "/slow", httpx.TimeoutException, timeout=httpx.Timeout(0.5, connect=2.0),  # type: ignore[arg-type]
                max_seconds=1.5,
            )
        )
        results.append(await _check_one(client, "POST /notify after the timeouts", base + "/notify", None))
        results.append(
            await _check_one(
                client, "refused connection (closed port)",
                f"http://127.0.0.1:{_free_closed_port()}/notify", httpx.ConnectError, timeout=5.0,
            )
        )
        if dns:
            results.append(
                await _check_one(client, "unresolvable host (.invalid)", UNRESOLVABLE_URL,
                                 httpx.ConnectError, timeout=5.0)
            )
        info = await _check_one(
            client, "server closes without response (info)", base + "/drop",
            httpx.TransportError, timeout=5.0,
        )
        info["informational"] = True
        results.append(info)
    # Pool exhausted: one connection, held ~1 s by another request; pool timeout 0.3 s.
    async with _check_client(kind, timeout=REQUEST_TIMEOUT, max_connections=1) as one:
        hog = asyncio.create_task(one.post(base + "/slow?s=1", content=BODY, headers=HEADERS))
        await asyncio.sleep(0.2)
        info = await _check_one(
            one, "pool full (max_connections=1), pool=0.3 (info)", base + "/notify",
            httpx.TimeoutException, timeout=httpx.Timeout(5.0, pool=0.3), max_seconds=1.0,  # type: ignore[arg-type]
        )
        info["informational"] = True
        results.append(info)
        with contextlib.suppress(Exception):
            await hog
    for r in results:
        r["transport"] = kind
    return results


def check_timeout(
    transports: Sequence[str] = CHECK_TRANSPORTS, base_url: str | None = None, dns: bool = True
) -> list[dict[str, Any]]:
    """Check timeout/connect-error behaviour per httpx transport; one dict per check.

    Checks (``ok`` is True when the expectation holds):

    * ``POST /slow`` (receiver sleeps 2 s) with per-request ``timeout=0.5`` on a client whose
      default timeout is 10 s raises ``httpx.TimeoutException`` within 1.5 s (float and
      ``httpx.Timeout`` forms), and the client still works afterwards;
    * a refused connection (closed loopback port) raises ``httpx.ConnectError``;
    * an unresolvable host (``does-not-exist.invalid``; ``dns=False`` skips it: it is the only
      check that asks the system resolver) raises ``httpx.ConnectError``;
    * informational: what a server closing the connection without answering raises, and what
      a pool timeout (``max_connections=1``, the connection busy, ``pool=0.3``) raises.
    """
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if base_url is None:
            base_url, _pid = stack.enter_context(receiver())
        for kind in transports:
            results.extend(asyncio.run(_check_transport(kind, base_url, dns)))
    return results


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
        print(title)
        def line(values: Sequence[str]) -> str:
            return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

        print(line(columns))
        print("  ".join("-" * w for w in widths))
        for r in rows:
            print(line(r))
        print()
        return
    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        table.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)


def print_results(results: Sequence[dict[str, Any]], requests: int) -> None:
    rows = []
    for r in results:
        if not r.get("runs"):
            rows.append([r["client"], str(r["concurrency"]), *["skipped"] * 6, "-", "-"])
            continue
        flags = (" T" if r["truncated"] else "") + (f" skip{r['skipped_runs']}" if r["skipped_runs"] else "")
        rows.append(
            [
                r["client"] + flags,
                str(r["concurrency"]),
                _fmt(r["rps_median"]),
                _fmt(r["rps_best"]),
                _fmt(r["p50_ms"], ".2f"),
                _fmt(r["p99_ms"], ".2f"),
                _fmt(r["client_cpu_pct"]),
                _fmt(r["server_cpu_pct"]),
                str(len(r["runs"])),
                str(r["errors"]),
            ]
        )
    _print_table(
        f"POST {len(BODY)}-byte JSON, {requests} requests/run after warm-up; median/best of runs "
        f"(CPU: 100 = one core, {os.cpu_count()} cores)",
        ["client", "conc", "req/s med", "req/s best", "p50 ms", "p99 ms", "cli CPU%", "srv CPU%",
         "runs", "errors"],
        rows,
    )
    rrows = [
        [
            f"{q['client']} / {q['baseline']}",
            str(q["concurrency"]),
            f"{q['rps_median_ratio']:.2f}x",
            f"{q['rps_best_ratio']:.2f}x",
            f"{q['p50_ratio']:.2f}x",
        ]
        for q in ratios(results)
    ]
    if rrows:
        _print_table("Throughput relative to aiohttp's ClientSession",
                     ["client", "conc", "req/s med", "req/s best", "p50 latency"], rrows)


def print_checks(checks: Sequence[dict[str, Any]]) -> None:
    rows = [
        [
            c["transport"],
            c["check"],
            c["expected"],
            c["got"],
            _fmt(c["elapsed_ms"], ".0f"),
            "info" if c.get("informational") else ("PASS" if c["ok"] else "FAIL"),
        ]
        for c in checks
    ]
    _print_table("Error behaviour (check_timeout)",
                 ["transport", "check", "expected", "got", "ms", "result"], rows)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench.http_clients", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "event_loop": "asyncio (default)",
        "versions": {p: version(p) for p in ("aiohttp", "httpx", "httpcore", "httpx-aiohttp", "anyio")},
        "body_bytes": len(BODY),
        "requests": args.requests,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "concurrency": args.concurrency,
        "clients": args.clients,
    }


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive integers like 1,8,32")
    return values


def _name_list(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    bad = [n for n in names if n not in CLIENTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown client(s) {bad}; choose from {', '.join(CLIENTS)}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_clients", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="measured requests per run (default %(default)s)")
    parser.add_argument("--concurrency", type=_int_list, default=list(DEFAULT_CONCURRENCY), help="comma list (default 1,8,32)")
    parser.add_argument("--clients", type=_name_list, default=list(CLIENTS), help=f"comma list of {', '.join(CLIENTS)}")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="interleaved runs per cell (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="warm-up requests per run (default %(default)s)")
    parser.add_argument("--max-seconds-per-run", type=float, default=DEFAULT_MAX_SECONDS_PER_RUN)
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET_SECONDS, help="skip runs starting after this many seconds (default %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write results, ratios and checks as JSON")
    parser.add_argument("--skip-checks", action="store_true", help="do not run check_timeout()")
    parser.add_argument("--checks-only", action="store_true", help="only run check_timeout()")
    parser.add_argument("--no-dns-check", action="store_true", help="skip the unresolvable-host check (the only non-loopback lookup)")
    parser.add_argument("--quiet", action="store_true", help="no per-run progress lines")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--requests and --repeats must be >= 1, --warmup >= 0")

    meta = _meta(args)
    print(f"{meta['command']}  |  Python {meta['python']}  {meta['platform']}  {meta['cpu_count']} CPUs  |  "
          + "  ".join(f"{k} {v}" for k, v in meta["versions"].items()), flush=True)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    if not args.checks_only:
        progress = None if args.quiet else (lambda line: print("  " + line, flush=True))
        results = measure(
            requests=args.requests, concurrency=args.concurrency, clients=args.clients,
            repeats=args.repeats, warmup=args.warmup, max_seconds_per_run=args.max_seconds_per_run,
            budget_seconds=args.budget, progress=progress,
        )
        print()
        print_results(results, args.requests)
    checks: list[dict[str, Any]] = []
    if not args.skip_checks:
        checks = check_timeout(dns=not args.no_dns_check)
        print_checks(checks)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"total {meta['seconds']} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "results": results, "ratios": ratios(results), "checks": checks}, fh, indent=2)
        print(f"wrote {args.json}")
    failed = [c for c in checks if not c["ok"] and not c.get("informational")]
    if failed:
        print("checks not met: " + "; ".join(f"{c['transport']}: {c['check']} -> {c['got']}" for c in failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
