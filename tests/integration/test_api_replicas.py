"""Two real api processes on one broker with the same settings, as behind one load balancer.

Each api is ``python -m bridge api`` on its own loopback port. What one api accepts or writes,
the other must honour: nonces, admin writes, replay jobs (watched, cancelled, taken over when
their api dies or is stopped). The measured delays are printed (run with ``-s``), not asserted.
"""

from __future__ import annotations

import copy
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.events import DeliveryTask
from bridge.ops.onboarding import create_request
from bridge.settings import Settings, child_env
from tests.fixtures.artemis import ADMIN_TOKEN, SUBSCRIBE, VIEW, ArtemisClient
from tests.fixtures.polling import eventually
from tests.fixtures.stack import ADMIN, payload, read_topic, stack_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 60.0  # generous: a loaded CI machine, never a performance claim


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Api:
    """One ``event-bridge api`` process; restartable on the same port."""

    settings: Settings
    name: str
    log_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Api:
        self.port = self.port or free_port()
        log = (self.log_dir / f"api-{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "api", "--port", str(self.port)],
            env={**child_env(self.settings), "PYTHONPATH": str(ROOT)}, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        until(lambda: self._ready(), f"api {self.name} ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"api {self.name} exited: {self.log()}"
        try:
            # /readyz says Kafka and topics; the partners list needs the registry view loaded.
            return (self.http.get("/readyz").status_code == 200
                    and self.http.get("/admin/v1/partners", headers=ADMIN).status_code == 200)
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return (self.log_dir / f"api-{self.name}.log").read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.http.close()


def until(check: Callable[[], Any], what: str) -> Any:
    # Polled often: the delays this module prints are read off these waits.
    return eventually(check, what, DEADLINE_S, interval=0.02)


@pytest.fixture
def apis(kafka_settings: Settings, tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    settings = stack_settings(kafka_settings, replay_takeover_s=3.0, access_log=False)
    a, b = Api(settings, "a", tmp_path), Api(settings, "b", tmp_path)
    with ThreadPoolExecutor(2) as pool:  # start both at once: half the wait
        list(pool.map(Api.start, (a, b)))
    try:
        yield a, b
    finally:
        for api in (a, b):
            api.stop()
        for api in (a, b):
            assert "Traceback" not in api.log(), api.log()


def create_partner(api: Api, types: list[int] | None = None) -> dict[str, Any]:
    answer = api.http.send(create_request(api.http, ADMIN_TOKEN, f"p-{uuid.uuid4().hex[:6]}",
                                          user_id="u", event_types=types))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def visible_on(api: Api, path: str, check: Callable[[dict[str, Any]], bool] = lambda _: True) -> float:
    """Seconds until GET ``path`` on ``api`` answers 200 with a body that passes ``check``."""
    started = time.monotonic()

    def seen() -> bool:
        answer = api.http.get(path, headers=ADMIN)
        return answer.status_code == 200 and check(answer.json())

    until(seen, f"{path} on api {api.name}")
    return time.monotonic() - started


# --------------------------------------------------------------------------- nonces


def test_a_nonce_accepted_by_one_api_is_refused_by_the_other(apis: tuple[Api, Api]) -> None:
    a, b = apis
    partner = create_partner(a)
    visible_on(b, f"/admin/v1/partners/{partner['id']}")
    client = ArtemisClient(a.http, partner["appKey"], partner["appSecret"])  # type: ignore[arg-type]

    used = headers = client.headers(VIEW, b"")
    first = a.http.post(VIEW, content=b"", headers=headers)
    assert first.status_code == 200 and first.json()["code"] == "0", first.text
    again = b.http.post(VIEW, content=b"", headers=headers)
    assert again.status_code == 401 and again.json()["reason"] == "replayed_nonce", again.text
    # and back the other way, with a nonce first used on b
    headers = client.headers(VIEW, b"")
    assert b.http.post(VIEW, content=b"", headers=headers).status_code == 200
    assert a.http.post(VIEW, content=b"", headers=headers).json()["reason"] == "replayed_nonce"

    # The same signed request sent to both apis at the same moment: exactly one is accepted.
    def race(_: int) -> list[int]:
        headers = client.headers(VIEW, b"")
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda api: api.http.post(VIEW, content=b"", headers=headers), (a, b)))
        refused = [r for r in answers if r.status_code == 401]
        assert all(r.json()["reason"] == "replayed_nonce" for r in refused)
        return sorted(r.status_code for r in answers)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(race, range(40)))
    assert outcomes == [[200, 401]] * 40

    # A restarted api reads the window back: what was used before its restart stays used.
    b.stop()
    b.start()
    after = b.http.post(VIEW, content=b"", headers=used)
    assert after.status_code == 401 and after.json()["reason"] == "replayed_nonce", after.text


# --------------------------------------------------------------------------- admin writes


def test_admin_writes_on_one_api_are_visible_on_the_other(apis: tuple[Api, Api]) -> None:
    a, b = apis
    delays: dict[str, float] = {}
    partner = create_partner(a, [196883])
    pid = partner["id"]
    delays["partner created"] = visible_on(b, f"/admin/v1/partners/{pid}")

    assert a.http.patch(f"/admin/v1/partners/{pid}", headers=ADMIN,
                        json={"name": "renamed", "delivery": {"maxInFlight": 3}}).status_code == 200
    delays["partner changed"] = visible_on(
        b, f"/admin/v1/partners/{pid}",
        lambda p: p["name"] == "renamed" and p["delivery"]["maxInFlight"] == 3)

    assert b.http.patch("/admin/v1/settings", headers=ADMIN, json={"pushStatuses": [0, 4]}).status_code == 200
    delays["setting changed"] = visible_on(a, "/admin/v1/settings", lambda s: s["pushStatuses"] == [0, 4])

    # A partner's Artemis subscribe on one api, its view on the other.
    on_a = ArtemisClient(a.http, partner["appKey"], partner["appSecret"])  # type: ignore[arg-type]
    on_b = ArtemisClient(b.http, partner["appKey"], partner["appSecret"])  # type: ignore[arg-type]
    dest = "http://127.0.0.1:9/replicas"
    assert on_a.post(SUBSCRIBE, {"eventTypes": [196883], "eventDest": dest}).json()["code"] == "0"
    started = time.monotonic()
    until(lambda: on_b.post(VIEW).json()["data"]["detail"], "subscription on api b")
    delays["subscription"] = time.monotonic() - started

    # A rotated secret: the new one works on the other api, the old one still in its grace.
    rotated = b.http.post(f"/admin/v1/partners/{pid}/rotate-secret", headers=ADMIN)
    assert rotated.status_code == 200, rotated.text
    with_new = ArtemisClient(a.http, partner["appKey"], rotated.json()["appSecret"])  # type: ignore[arg-type]
    started = time.monotonic()
    until(lambda: with_new.post(VIEW).status_code == 200, "rotated secret on api a")
    delays["secret rotated"] = time.monotonic() - started

    assert b.http.delete(f"/admin/v1/partners/{pid}", headers=ADMIN).status_code == 204
    started = time.monotonic()
    until(lambda: a.http.get(f"/admin/v1/partners/{pid}", headers=ADMIN).status_code == 404,
          "partner deleted on api a")
    delays["partner deleted"] = time.monotonic() - started
    print("\nvisible on the other api after (s):",
          ", ".join(f"{what} {delay:.3f}" for what, delay in delays.items()))


# --------------------------------------------------------------------------- replay jobs


def subscribed_partner_with_events(a: Api, count: int) -> tuple[str, float, list[str]]:
    partner = create_partner(a, [196883])
    client = ArtemisClient(a.http, partner["appKey"], partner["appSecret"])  # type: ignore[arg-type]
    answer = client.post(SUBSCRIBE, {"eventTypes": [196883], "eventDest": "http://127.0.0.1:9/replay"})
    assert answer.json()["code"] == "0", answer.text
    start = time.time() - 1
    ids = [f"ev-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    for event_id in ids:
        body = copy.deepcopy(payload())
        body["params"]["events"][0]["eventId"] = event_id
        assert a.http.post("/eventRcv", json=body).status_code == 200
    return str(partner["id"]), start, ids


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def start_replay(api: Api, pid: str, start: float, rate: float) -> dict[str, Any]:
    answer = api.http.post("/admin/v1/replays", headers=ADMIN,
                           json={"partnerId": pid, "fromTime": iso(start), "rate": rate})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def replay_job(api: Api, job_id: str) -> dict[str, Any]:
    """The job as ``api`` shows it; empty while that api has not seen it yet."""
    answer = api.http.get(f"/admin/v1/replays/{job_id}", headers=ADMIN)
    assert answer.status_code in (200, 404), answer.text
    return dict(answer.json()) if answer.status_code == 200 else {}


def replayed_ids(settings: Settings, pid: str, expected: set[str]) -> set[str]:
    """Event ids of replay tasks for ``pid`` on bridge.deliveries, once all are there."""
    def ids(tasks: list[DeliveryTask]) -> set[str]:
        return {i for t in tasks if t.partner_id == pid and t.trigger == "replay" for i in t.event_ids}

    tasks = read_topic(settings, "deliveries", DeliveryTask.decode,
                       until=lambda tasks: ids(tasks) >= expected, timeout=DEADLINE_S)
    return ids(tasks)


def test_a_replay_started_on_one_api_is_watched_and_cancelled_on_the_other(apis: tuple[Api, Api]) -> None:
    a, b = apis
    pid, start, ids = subscribed_partner_with_events(a, 20)
    job = start_replay(a, pid, start, rate=2)
    assert job["owner"] != "" and job["state"] == "running"

    started = time.monotonic()
    until(lambda: replay_job(b, job["id"]).get("enqueued", 0) >= 1, "replay progress on api b")
    print(f"\nreplay progress visible on the other api after {time.monotonic() - started:.3f} s")
    assert job["id"] in [j["id"] for j in b.http.get("/admin/v1/replays", headers=ADMIN).json()]

    cancelled = b.http.delete(f"/admin/v1/replays/{job['id']}", headers=ADMIN)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["cancelRequested"]
    on_a = replay_job(a, job["id"])
    assert on_a["state"] == "cancelled" and on_a["owner"] == job["owner"]
    assert 1 <= on_a["enqueued"] < len(ids)


@pytest.mark.parametrize("how", ["killed", "stopped"])
def test_a_replay_survives_its_api(apis: tuple[Api, Api], how: str) -> None:
    a, b = apis
    # 24 tasks at 3/s: the api is stopped well before its replay could end by itself.
    pid, start, ids = subscribed_partner_with_events(a, 24)
    job = start_replay(a, pid, start, rate=3)
    until(lambda: replay_job(b, job["id"]).get("enqueued", 0) >= 2, "replay progress on api b")

    a.stop(signal.SIGKILL if how == "killed" else signal.SIGTERM)
    stopped_at = time.monotonic()
    if how == "stopped":  # handed over as the api stopped (and maybe already claimed)
        after = replay_job(b, job["id"])
        assert after["released"] or after["owner"] != job["owner"], after
    taken = until(lambda: (j := replay_job(b, job["id"]))["owner"] != job["owner"] and j, "takeover by api b")
    print(f"\nreplay ({how} api) taken over after {time.monotonic() - stopped_at:.3f} s "
          f"at {taken['positions']} ({taken['enqueued']} of {taken['total']} enqueued)")
    assert taken["epoch"] == 1 and taken["state"] in ("running", "done")

    done = until(lambda: (j := replay_job(b, job["id"]))["state"] != "running" and j, "replay done on api b")
    assert done["state"] == "done" and done["total"] == len(ids)
    assert done["enqueued"] >= len(ids)  # at least once: what followed the last record is sent again
    assert replayed_ids(b.settings, pid, set(ids)) == set(ids)

    # The restarted api shows the job as it ended.
    a.start()
    assert replay_job(a, job["id"])["state"] == "done"


def test_a_replay_whose_api_was_killed_can_still_be_cancelled(apis: tuple[Api, Api]) -> None:
    a, b = apis
    pid, start, ids = subscribed_partner_with_events(a, 12)
    job = start_replay(a, pid, start, rate=1)
    until(lambda: replay_job(b, job["id"]).get("enqueued", 0) >= 1, "replay progress on api b")
    a.stop(signal.SIGKILL)
    # Nobody runs it now: api b claims it once it is orphaned and records the cancellation.
    cancelled = b.http.delete(f"/admin/v1/replays/{job['id']}", headers=ADMIN)
    assert cancelled.status_code == 200, cancelled.text
    final = until(lambda: (j := replay_job(b, job["id"]))["state"] != "running" and j, "cancelled on api b")
    assert final["state"] == "cancelled" and final["cancelRequested"] and final["epoch"] == 1
    assert final["enqueued"] < len(ids)
