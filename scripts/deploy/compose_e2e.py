"""The running compose stack end to end (called by scripts/deploy/test-deploy.sh).

Onboards a partner through the admin API, subscribes it with a signed Artemis call, posts platform
events to ingest and checks each reaches the receiver; SIGKILLs one worker container, posts more and
checks nothing is lost; checks every metric named in the dashboard and the alert rules is exposed
by the api's or a worker's /metrics.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bridge.platform.artemis import signed_headers

ROOT = Path(__file__).resolve().parents[2]
API = f"http://127.0.0.1:{os.environ['API_PORT']}"
RECEIVER = f"http://127.0.0.1:{os.environ['RECEIVER_PORT']}"
TOKEN = os.environ["BRIDGE_ADMIN_TOKEN"]
COMPOSE = os.environ["COMPOSE"].split()
SUBSCRIBE = "/artemis/api/eventService/v1/eventSubscriptionByEventTypes"
TEMPLATE = json.loads((ROOT / "bridge/resources/payloads/acs_card_196883_event_acs.json").read_text())


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(1)
    raise SystemExit(f"FAIL: {what} within {timeout:.0f} s")


def push(event_ids: list[str]) -> None:
    for event_id in event_ids:
        body = copy.deepcopy(TEMPLATE)
        body["params"]["events"][0]["eventId"] = event_id
        status, answer = call("POST", API + "/eventRcv", body)
        if status != 200:
            raise SystemExit(f"FAIL: ingest answered {status}: {answer}")


def received() -> list[str]:
    return call("GET", RECEIVER + "/received")[1]


def metric_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)} | \
        {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}


def referenced_metrics() -> set[str]:
    files = [ROOT / "helm/event-bridge/files/dashboard.json", ROOT / "helm/event-bridge/files/alerts.yml"]
    return {name for f in files for name in re.findall(r"\b(bridge_[a-z_]+)", f.read_text())}


def exposed(name: str, names: set[str]) -> bool:
    base = re.sub(r"_(bucket|sum|count|total|created)$", "", name)
    return name in names or base in names or f"{base}_total" in names


def main() -> int:
    wait("the api is ready", lambda: call("GET", API + "/readyz")[0] == 200, 300)
    status, partner = call("POST", API + "/admin/v1/partners", {"name": "deploy-test", "userId": "admin",
                                                                 "eventTypes": None},
                           {"Authorization": f"Bearer {TOKEN}"})
    assert status == 201, (status, partner)
    body = json.dumps({"eventTypes": [196883], "eventDest": "http://receiver:8000/events"}).encode()
    status, answer = call("POST", API + SUBSCRIBE, body,
                          signed_headers(partner["appKey"], partner["appSecret"], "POST", SUBSCRIBE, body))
    assert status == 200 and answer["code"] == "0", (status, answer)
    print(f"partner {partner['id']} onboarded and subscribed with a signed Artemis call")

    run = uuid.uuid4().hex[:6]
    first = [f"deploy-{run}-a{i}" for i in range(30)]
    # The subscription reaches the workers through Kafka: probe with fresh events until one arrives.
    probes: list[str] = []

    def probe() -> bool:
        probes.append(f"deploy-{run}-probe{len(probes)}")
        push(probes[-1:])
        time.sleep(2)
        return bool(set(probes) & set(received()))

    wait("a probe event reaches the receiver", probe, 180)
    push(first)
    wait(f"{len(first)} events reach the receiver", lambda: set(first) <= set(received()), 180)
    print(f"{len(first)} events ingested and delivered")

    workers = subprocess.run([*COMPOSE, "ps", "-q", "worker"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert len(workers) == 2, workers
    subprocess.run(["docker", "kill", "--signal", "KILL", workers[0]], check=True, capture_output=True)
    print(f"worker container {workers[0][:12]} killed (SIGKILL)")
    second = [f"deploy-{run}-b{i}" for i in range(30)]
    push(second)
    def all_received() -> list[str] | None:
        got = received()
        return got if set(first + second) <= set(got) else None

    got = wait("every event after the kill reaches the receiver", all_received, 300)
    duplicates = len(got) - len(set(got))
    print(f"{len(second)} more events delivered with one worker killed: 0 lost, {duplicates} duplicates")

    names = metric_names(call("GET", API + "/metrics")[1])
    worker_metrics = subprocess.run(
        ["docker", "exec", workers[1], "python3", "-c",
         "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9108/metrics').read().decode())"],
        capture_output=True, text=True, check=True).stdout
    names |= metric_names(worker_metrics)
    missing = sorted(n for n in referenced_metrics() if not exposed(n, names))
    if missing:
        print(f"FAIL: metrics named in the dashboard or the rules but not exposed: {missing}")
        return 1
    print(f"all {len(referenced_metrics())} metrics named in the dashboard and the rules are exposed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
