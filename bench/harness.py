"""The shared harness of the benchmark scenarios: broker, bridge processes, receivers, load, sampling.

Everything here is loopback-only and bounded: every wait has a deadline, every process this
module starts is stopped by it (``Cleanup``), and the broker runs from a throw-away directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
#: The broker port of the benchmarks (off 9092/19092 so `make run` and `make test` are not disturbed).
DEFAULT_BROKER_PORT = 29792


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------

_T0 = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - _T0
    print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence.

    Not ``statistics.quantiles``: it interpolates between samples, so its p99 of 100 latencies
    is a value no event had, and the numbers would no longer compare with earlier runs'.
    """
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


# --------------------------------------------------------------------------------------------
# /proc sampling: peak RSS and CPU time per process
# --------------------------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, or None if the process is gone. For VmHWM, the
    kernel's peak RSS, which psutil does not expose on Linux."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(key.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size of a process in kB (VmRSS), or None if it is gone."""
    import psutil  # the bench extra's; importing bench.harness needs only the test set-up

    try:
        return int(psutil.Process(pid).memory_info().rss // 1024)
    except psutil.Error:
        return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, in seconds (own threads included, children not)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class ProcWatch:
    """Samples the RSS of named processes every ``interval`` s; keeps peaks and CPU seconds.

    The peak reported is max(sampled VmRSS, VmHWM read before the process ends). VmHWM is the
    kernel's own high-water mark, exact for processes started for one scenario; for long-lived
    processes (the broker, this driver) only the sampled peak within the scenario is used.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.procs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procwatch", daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int, hwm: bool = True) -> None:
        with self._lock:
            if name in self.procs and self.procs[name]["pid"] == pid:
                return
            base = self.procs.get(name)
            self.procs[name] = {
                "pid": pid, "hwm": hwm, "peak_kb": base["peak_kb"] if base else 0,
                "cpu_s": base["cpu_s"] if base else 0.0, "cpu0": proc_cpu_s(pid) or 0.0,
                "restarts": (base["restarts"] + 1) if base else 0, "alive": True,
            }

    def _sample(self, entry: dict[str, Any]) -> None:
        rss = proc_rss_kb(entry["pid"])
        if rss is None:
            return
        if entry["hwm"]:
            rss = max(rss, proc_status_kb(entry["pid"], "VmHWM") or 0)
        entry["peak_kb"] = max(entry["peak_kb"], rss)
        cpu = proc_cpu_s(entry["pid"])
        if cpu is not None:
            entry["cpu_last"] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                for entry in self.procs.values():
                    if entry["alive"]:
                        self._sample(entry)

    def cpu(self, name: str) -> float:
        """CPU seconds of ``name`` since it was added (all its incarnations)."""
        with self._lock:
            e = self.procs[name]
            now = proc_cpu_s(e["pid"]) if e["alive"] else None
            last = now if now is not None else e.get("cpu_last", e["cpu0"])
            return e["cpu_s"] + last - e["cpu0"]

    def finish(self, name: str) -> None:
        """Read the final peak and CPU of a process about to end (call before killing it)."""
        with self._lock:
            e = self.procs.get(name)
            if e is None or not e["alive"]:
                return
            self._sample(e)
            e["cpu_s"] += e.get("cpu_last", e["cpu0"]) - e["cpu0"]
            e["cpu0"] = e.get("cpu_last", e["cpu0"])
            e["alive"] = False

    def report(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            for e in self.procs.values():
                if e["alive"]:
                    self._sample(e)
            out = {}
            for name, e in self.procs.items():
                cpu = e["cpu_s"] + (e.get("cpu_last", e["cpu0"]) - e["cpu0"] if e["alive"] else 0.0)
                out[name] = {"peak_rss_mb": round(e["peak_kb"] / 1024, 1), "cpu_s": round(cpu, 2),
                             "restarts": e["restarts"]}
            return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------


class Cleanup:
    """Processes this run started, stopped at the end whatever happens (by pid, never by name)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def track(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout=10)
        self.procs.clear()


CLEANUP = Cleanup()


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def spawn(args: list[str], log_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_file, "ab")  # noqa: SIM115 - lives as long as the child
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=ROOT)
    out.close()
    return CLEANUP.track(proc)


# --------------------------------------------------------------------------------------------
# the broker
# --------------------------------------------------------------------------------------------


class Broker:
    """A dedicated local Kafka for the benchmarks, in a throw-away directory.

    The broker classpath comes from the usual cache (``BRIDGE_CACHE_DIR``, fetched once with
    Maven); its data lives in a temporary directory deleted at the end, so runs do not pile up
    topics on disk.
    """

    def __init__(self, port: int = DEFAULT_BROKER_PORT, heap: str = "768m") -> None:
        from bridge.ops.localkafka import LocalKafka
        from bridge.settings import Settings

        self.port = port
        self.cache = Settings().cache_dir
        fetcher = LocalKafka(self.cache, port)
        if not fetcher.fetched():
            log(f"fetching Kafka {fetcher.version} into {fetcher.libs} (once)...")
            fetcher.fetch()
        self.tmp = Path(tempfile.mkdtemp(prefix="event-bridge-bench-"))
        (self.tmp / f"kafka-{fetcher.version}").symlink_to(fetcher.libs.parent)
        self.kafka = LocalKafka(self.tmp, port, heap)
        self.pid: int | None = None

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def start(self) -> None:
        status, _ = self.kafka.start()
        self.pid = status.pid

    def stop(self) -> None:
        try:
            self.kafka.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the receiver process
# --------------------------------------------------------------------------------------------


class Receiver:
    """``python -m bench.receiver`` in its own process; see that module for its paths."""

    def __init__(self, logs: Path) -> None:
        port_file = logs / f"receiver-{uuid.uuid4().hex[:6]}.port"
        self.proc = spawn([sys.executable, "-m", "bench.receiver", "--port-file", str(port_file)],
                          logs / "receiver.log")
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"receiver did not start (see {logs / 'receiver.log'})")
            time.sleep(0.05)
        self.port = int(port_file.read_text())
        port_file.unlink()
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, group: str, name: str, mode: str = "ok", delay: float = 0.0) -> str:
        if mode == "slow":
            return f"{self.base}/slow/{delay:g}/{group}/{name}"
        if mode == "never":
            return f"{self.base}/never/{group}/{name}"
        return f"{self.base}/p/{group}/{name}"

    def _get(self, path: str, **params: Any) -> Any:
        import urllib.parse
        import urllib.request

        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        with urllib.request.urlopen(f"{self.base}{path}?{query}", timeout=60) as resp:
            return json.loads(resp.read())

    def count(self, prefix: str) -> int:
        return int(self._get("/_bench/count", prefix=prefix)["received"])

    def held(self) -> int:
        """Requests to ``slow`` URLs the receiver holds right now (pushes in flight to it)."""
        return int(self._get("/_bench/count")["held"])

    def stats(self, prefix: str, split: Sequence[str] = (), expect: int | None = None,
              partners: int | None = None, quantiles: int = 0, series: int = 0) -> dict[str, Any]:
        return self._get("/_bench/stats", prefix=prefix, split=",".join(split), expect=expect,
                         partners=partners, quantiles=quantiles or None, series=series or None)

    def reset(self, prefix: str) -> None:
        import urllib.request

        req = urllib.request.Request(f"{self.base}/_bench/reset?prefix={prefix}", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=30).read()

    def wait_count(self, prefix: str, target: int, timeout: float, idle: float = 15.0,
                   label: str = "", every: float = 5.0) -> tuple[int, bool]:
        """Poll until ``target`` receipts under ``prefix`` (True), or timeout/idle (False)."""
        start = time.monotonic()
        last_n, last_change, last_print = -1, start, start
        n = 0
        while True:
            n = self.count(prefix)
            now = time.monotonic()
            if n >= target:
                return n, True
            if n != last_n:
                last_n, last_change = n, now
            if now - last_change > idle or now - start > timeout:
                return n, False
            if label and now - last_print >= every:
                log(f"    {label}: {n:,}/{target:,} received")
                last_print = now
            time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc, 10)


# --------------------------------------------------------------------------------------------
# the bridge under test
# --------------------------------------------------------------------------------------------

ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(8)
VIEW_PATH = "/artemis/api/eventService/v1/eventSubscriptionView"


@dataclass
class PartnerRef:
    id: str
    app_key: str
    app_secret: str
    dest: str
    name: str


class BridgeStack:
    """The bridge as deployed: ``python -m bridge api`` and ``python -m bridge worker`` subprocesses.

    Each stack gets its own topic prefix and consumer-group id, so scenarios never see each
    other's records.
    """

    def __init__(self, bootstrap: str, name: str, logs: Path, watch: ProcWatch,
                 **overrides: Any) -> None:
        from cryptography.fernet import Fernet
        from pydantic import SecretStr

        from bridge.settings import Settings

        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.name = name
        self.logs = logs
        self.watch = watch
        values: dict[str, Any] = {
            "mode": "prod",
            "kafka_bootstrap": bootstrap,
            "topic_prefix": f"bench.{tag}.",
            "app_id": f"bench-{tag}",
            "admin_token": SecretStr(ADMIN_TOKEN),
            "secret_key": SecretStr(Fernet.generate_key().decode()),
            "dest_allow": ["127.0.0.0/8"],
            "worker_metrics_port": 0,
            "http_host": "127.0.0.1",
            "http_port": free_port(),
            "access_log": False,
            "log_level": "WARNING",
        }
        values.update(overrides)
        self.settings = Settings(**values)
        self.base = f"http://127.0.0.1:{self.settings.http_port}"
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_starts = 0

    # processes

    def _env(self) -> dict[str, str]:
        from bridge.settings import child_env

        return child_env(self.settings)

    def start(self, worker: bool = True) -> BridgeStack:
        from bridge.kafka.admin import ensure_topics

        ensure_topics(self.settings)
        self.api = spawn([sys.executable, "-m", "bridge", "api"], self.logs / f"{self.name}-api.log",
                         self._env())
        self.watch.add("bridge api", self.api.pid)
        if worker:
            self.start_worker()
        self.wait_api()
        return self

    def start_worker(self) -> None:
        self.worker = spawn([sys.executable, "-m", "bridge", "worker", "-l", "warn"],
                            self.logs / f"{self.name}-worker.log", self._env())
        self.worker_starts += 1
        self.watch.add("bridge worker", self.worker.pid)

    def stop_worker(self) -> None:
        """SIGTERM: the worker drains and commits, as on a deploy."""
        assert self.worker is not None
        self.watch.finish("bridge worker")
        self.worker.send_signal(signal.SIGTERM)
        self.worker.wait(60)

    def kill_worker(self) -> None:
        assert self.worker is not None
        self.watch.finish("bridge worker")
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(10)

    def wait_api(self, timeout: float = 60.0) -> None:
        """Until the API answers and its registry view is loaded (the admin list answers 200)."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.api is not None
            if self.api.poll() is not None:
                raise RuntimeError(f"bridge api exited ({self.logs / (self.name + '-api.log')})")
            try:
                req = urllib.request.Request(self.base + "/admin/v1/partners",
                                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError("bridge api did not become ready")

    def stop(self) -> None:
        for name, proc in (("bridge worker", self.worker), ("bridge api", self.api)):
            if proc is not None and proc.poll() is None:
                self.watch.finish(name)
        stop_process(self.worker, 30)
        stop_process(self.api, 15)

    # partners

    async def create_partners(self, dests: Sequence[tuple[str, str]], event_types: Sequence[int],
                              concurrency: int = 8, delivery: dict[str, Any] | None = None,
                              progress_every: int = 0) -> list[PartnerRef]:
        """Create partners with the admin API and subscribe each with a signed Artemis call."""
        import httpx

        from bridge.ops.onboarding import onboard

        refs: list[PartnerRef | None] = [None] * len(dests)
        sem = asyncio.Semaphore(concurrency)
        done = 0
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=self.base, timeout=60, limits=limits) as http:

            async def one(i: int, name: str, dest: str) -> None:
                nonlocal done
                async with sem:
                    partner = await onboard(http, ADMIN_TOKEN, name, event_types, dest,
                                            user_id="bench", delivery=delivery)
                    refs[i] = PartnerRef(partner.id, partner.app_key, partner.app_secret, dest, name)
                    done += 1
                    if progress_every and done % progress_every == 0:
                        log(f"    {done:,}/{len(dests):,} partners created and subscribed")

            await asyncio.gather(*(one(i, n, d) for i, (n, d) in enumerate(dests)))
        return [r for r in refs if r is not None]

    def seed_registry(self, partners: int, subscriptions: Callable[[int], Sequence[tuple[int, str]]],
                      secret: str | None = None) -> float:
        """Write ``partners`` partners and their subscriptions straight to the registry topics.

        For registries too big to build through the API within the time budget (10,000 partners).
        The records are exactly what the API writes (each model's
        ``model_dump_json()``); every partner shares one encrypted secret (``secret``), partner
        ``i`` has appKey ``20000000 + i``. Returns seconds taken.
        """
        from confluent_kafka import Producer

        from bridge.kafka.config import client_config
        from bridge.registry.models import EncryptedSecret, Partner, Subscription
        from bridge.registry.partners import SecretBox, new_app_secret
        from bridge.topics import topic_table

        t0 = time.perf_counter()
        table = topic_table(self.settings)
        assert self.settings.secret_key is not None
        token = SecretBox(self.settings.secret_key.get_secret_value()).seal(secret or new_app_secret())
        producer = Producer(client_config(self.settings, **{"linger.ms": 20, "acks": "all",
                                                         "enable.idempotence": True}))
        now = time.time()
        for i in range(partners):
            pid = f"seed-{i:05d}-{uuid.uuid4().hex[:8]}"
            partner = Partner(id=pid, name=f"seeded {i}", user_id="bench", app_key=str(20_000_000 + i),
                              secrets=(EncryptedSecret(token=token, created_at=now),), event_types=None,
                              created_at=now, updated_at=now)
            _produce(producer, table["partners"].name, pid.encode(), partner.model_dump_json().encode())
            for event_type, dest in subscriptions(i):
                sub = Subscription(partner_id=pid, event_type=event_type, event_dest=dest, updated_at=now)
                _produce(producer, table["subscriptions"].name, sub.key.encode(), sub.model_dump_json().encode())
        left = producer.flush(60)
        if left:
            raise RuntimeError(f"{left} registry records not acknowledged")
        return time.perf_counter() - t0

    def warm_up(self, receiver: Receiver, timeout: float = 120.0) -> float:
        """Until one event goes all the way through (the worker has joined and routes).

        A dedicated partner subscribed to a type no scenario uses (131330) receives it.
        Returns the seconds it took.
        """
        t0 = time.monotonic()
        group = f"warm-{self.name}"
        asyncio.run(self.create_partners([("warm-up", receiver.url(group, "w"))], [WARM_TYPE]))
        pushes = build_pushes(1, event_type=WARM_TYPE)
        url = self.base + self.settings.ingest_path
        while time.monotonic() - t0 < timeout:
            asyncio.run(post_pushes(url, pushes, concurrency=1))
            for _ in range(20):
                if receiver.count(group + "/") >= 1:
                    return time.monotonic() - t0
                if self.worker is not None and self.worker.poll() is not None:
                    raise RuntimeError(f"bridge worker exited ({self.logs / (self.name + '-worker.log')})")
                time.sleep(0.25)
        raise RuntimeError(f"no warm-up delivery within {timeout:.0f} s")

    def wait_delivered(self, receiver: Receiver, prefix: str, target: int, timeout: float) -> None:
        receiver.wait_count(prefix, target, timeout)

    async def signed_call_ms(self, ref: PartnerRef, path: str, body: dict[str, Any], n: int = 20) -> list[float]:
        """Latencies (ms) of ``n`` signed Artemis calls by one partner."""
        import aiohttp

        from bridge.platform.artemis import signed_headers

        out = []
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                payload = json.dumps(body).encode()
                headers = signed_headers(ref.app_key, ref.app_secret, "POST", path, payload)
                t0 = time.perf_counter()
                async with http.post(self.base + path, data=payload, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{path}: HTTP {resp.status}")
                out.append((time.perf_counter() - t0) * 1e3)
        return out


def _produce(producer: Any, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)


# --------------------------------------------------------------------------------------------
# load: realistic pushes with a sequence number and a send time in every event
# --------------------------------------------------------------------------------------------

TS_PLACEHOLDER = b'"benchTs":0.0'
#: A valid push without events: what the raw producers send first, to warm up.
EMPTY_PUSH = b'{"method":"OnEventNotify","params":{"ability":"event_acs","events":[]}}'
#: Event types of the simulator's access-control family, which every benchmark partner takes.
ACS_TYPES = (196883, 196893, 198914)
#: The type of the warm-up event (a video type no scenario's partners take).
WARM_TYPE = 131330


@dataclass
class Push:
    template: bytes  # the push JSON with TS_PLACEHOLDER in every event
    events: int
    first_seq: int

    def stamped(self, now: float | None = None) -> bytes:
        return self.template.replace(TS_PLACEHOLDER, b'"benchTs":%.6f' % (now if now is not None else time.time()))


def build_pushes(events: int, seed: int = 7, families: Sequence[str] = ("acs",),
                 event_type: int | None = None, max_per_push: int | None = None) -> list[Push]:
    """``events`` events in realistic pushes (bridge.ops.simulate), numbered 0..events-1.

    Access-control pushes carry 1-6 events each (door controllers' bursts). ``event_type`` forces
    one type on every event (the fan-out scenario); ``max_per_push=1`` gives one event per push.
    """
    from bridge.ops.simulate import Simulator

    sim = Simulator(rate=1000.0, families=families, seed=seed)
    out: list[Push] = []
    seq = 0
    for scheduled in sim.pushes(None):
        body = scheduled.body
        evs = body["params"]["events"]
        if max_per_push:
            evs = evs[:max_per_push]
        evs = evs[: events - seq]
        first = seq
        for ev in evs:
            if event_type is not None:
                ev["eventType"] = event_type
            ev["benchSeq"] = seq
            ev["benchTs"] = 0.0
            seq += 1
        body["params"]["events"] = evs
        out.append(Push(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
                        len(evs), first))
        if seq >= events:
            break
    return out


def delivery_body(push: Push) -> bytes:
    """A single-event ``OnEventNotify`` as a partner receives it (for the raw HTTP client limit)."""
    body = json.loads(push.stamped(0.0))
    body["params"]["events"] = body["params"]["events"][:1]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class SendResult:
    pushes: int = 0
    events: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_error: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)


async def post_pushes(url: str, pushes: Sequence[Push], concurrency: int = 32,
                      rate: float | None = None, label: str = "", deadline_s: float | None = None,
                      on_progress: Callable[[SendResult], None] | None = None) -> SendResult:
    """POST pushes to the bridge's ingest; as fast as ``concurrency`` allows, or at ``rate`` events/s.

    At a fixed rate each push is sent when its time comes (open loop: a slow answer does not
    delay later pushes, up to ``concurrency`` outstanding); ``lag_ms`` says how late sends were.
    """
    import aiohttp

    result = SendResult()
    sem = asyncio.Semaphore(concurrency)
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def one(push: Push) -> None:
            t0 = time.perf_counter()
            try:
                async with http.post(url, data=push.stamped(), headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                result.pushes += 1
                result.events += push.events
                result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                result.failed += 1
                if not result.first_error:
                    result.first_error = f"{type(exc).__name__}: {exc}"[:200]
            finally:
                sem.release()

        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        sent_events = 0
        last_print = start
        for push in pushes:
            if rate is not None:
                due = start + sent_events / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    result.lag_ms.append(-delay * 1e3)
            await sem.acquire()
            task = asyncio.create_task(one(push))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent_events += push.events
            now = time.perf_counter()
            if label and now - last_print >= 5:
                log(f"    {label}: {sent_events:,} events sent ({result.events:,} acknowledged)")
                last_print = now
                if on_progress:
                    on_progress(result)
            if deadline_s is not None and now - start > deadline_s:
                break
        if tasks:
            await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
    return result


def produce_raw(bootstrap: str, topic: str, pushes: Sequence[Push], rate: float | None = None,
                bridge_like: bool = True) -> dict[str, Any]:
    """Produce one record per push with confluent-kafka (stamped at produce time); returns timings.

    ``bridge_like`` uses the bridge's producer settings (idempotent, acks=all, lz4, linger 5 ms).
    """
    from confluent_kafka import Producer

    conf = kafka_config(bootstrap)
    if bridge_like:
        conf.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5, "compression.type": "lz4"})
    producer = Producer(conf)
    # Not timed: metadata and the idempotent producer id (the first produce waits for them).
    _produce(producer, topic, None, EMPTY_PUSH)  # type: ignore[arg-type]
    producer.flush(30)
    start = time.perf_counter()
    sent_events = 0
    for push in pushes:
        if rate is not None:
            delay = start + sent_events / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        _produce(producer, topic, None, push.stamped())  # type: ignore[arg-type]
        sent_events += push.events
    produced = time.perf_counter() - start
    left = producer.flush(60)
    return {"records": len(pushes) - left, "events": sent_events,
            "produce_s": produced, "acked_s": time.perf_counter() - start}


def kafka_config(bootstrap: str, **overrides: Any) -> dict[str, Any]:
    """The bridge's client configuration (security settings from BRIDGE_KAFKA_*) for ``bootstrap``."""
    from bridge.kafka.config import client_config
    from bridge.settings import get_settings

    return client_config(get_settings().model_copy(update={"kafka_bootstrap": bootstrap}), **overrides)


def create_topic(bootstrap: str, name: str, partitions: int = 6) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(kafka_config(bootstrap))
    futures = admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
    for future in futures.values():
        future.result()


# --------------------------------------------------------------------------------------------
# the naive bridge, as a subprocess
# --------------------------------------------------------------------------------------------


class NaiveProc:
    """``python -m bench.naive`` (the hand-written bridge) in its own process."""

    def __init__(self, bootstrap: str, topic: str, subs: dict[int, list[str]], logs: Path,
                 watch: ProcWatch, expect_events: int, max_seconds: float, name: str = "naive",
                 group: str | None = None, idle_exit_s: float = 10.0, timeout_s: float = 5.0,
                 session_timeout_ms: int = 0) -> None:
        self.stats_file = logs / f"{name}-{uuid.uuid4().hex[:6]}.json"
        subs_file = logs / f"{name}-subs-{uuid.uuid4().hex[:6]}.json"
        subs_file.write_text(json.dumps({str(k): v for k, v in subs.items()}))
        self.proc = spawn([sys.executable, "-m", "bench.naive", "--bootstrap", bootstrap, "--topic", topic,
                           "--group", group or f"naive-{uuid.uuid4().hex[:8]}", "--subs", str(subs_file),
                           "--expect-events", str(expect_events), "--max-seconds", str(max_seconds),
                           "--idle-exit", str(idle_exit_s), "--stats", str(self.stats_file),
                           "--timeout", str(timeout_s), "--session-timeout-ms", str(session_timeout_ms)],
                          logs / f"{name}.log")
        self.watch = watch
        watch.add("naive bridge", self.proc.pid)

    def wait(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            self.watch._sample(self.watch.procs["naive bridge"])  # noqa: SLF001 - HWM before exit
        self.watch.finish("naive bridge")
        stop_process(self.proc, 10)
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def kill(self) -> None:
        self.watch.finish("naive bridge")
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


@contextlib.contextmanager
def scenario_env(name: str, logs_root: Path, broker: Broker) -> Iterator[tuple[Path, ProcWatch, Receiver]]:
    """A scenario's log folder, process watcher (broker, driver, receiver added) and receiver."""
    logs = logs_root / name
    logs.mkdir(parents=True, exist_ok=True)
    watch = ProcWatch()
    if broker.pid:
        watch.add("kafka broker (JVM)", broker.pid, hwm=False)
    watch.add("bench driver (load generator)", os.getpid(), hwm=False)
    receiver = Receiver(logs)
    watch.add("receiver", receiver.pid)
    try:
        yield logs, watch, receiver
    finally:
        watch.finish("receiver")
        receiver.stop()
        watch.close()
