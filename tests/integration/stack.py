"""A whole bridge for end-to-end tests: the API in-process, workers as real subprocesses."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bridge.api import create_app
from bridge.delivery.records import decode_outcome
from bridge.kafka.admin import ensure_topics
from bridge.kafka.config import client_config
from bridge.settings import Settings, child_env
from tests.integration.test_artemis_api import SUBSCRIBE, ArtemisClient

ROOT = Path(__file__).resolve().parents[2]
PAYLOADS = ROOT / "bridge" / "resources" / "payloads"
ADMIN = {"Authorization": "Bearer test-admin-token"}


def payload(name: str = "acs_card_196883_event_acs.json") -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


def stack_settings(base: Settings, **changes: Any) -> Settings:
    settings = base.model_copy(update={
        "mode": "prod",
        "admin_token": SecretStr("test-admin-token"),
        "secret_key": SecretStr(Fernet.generate_key().decode()),
        "dest_allow": ["127.0.0.0/8"],
        "retry_schedule": [0.5, 0.5, 0.5],
        "retry_jitter": 0.0,
        "retry_after_floor_s": 0.5,
        "worker_metrics_port": 0,
        "breaker_failures": 1000,
        **changes,
    })
    ensure_topics(settings)
    return settings


@dataclass
class Worker:
    settings: Settings
    proc: subprocess.Popen[bytes] | None = None
    #: ``event-bridge worker`` options beyond the log level (e.g. ``["--stages", "delivery"]``).
    args: list[str] = field(default_factory=list)
    #: File that receives the worker's log (stderr); None: the test's own stderr.
    log: Path | None = None

    def start(self) -> Worker:
        level = os.environ.get("TEST_WORKER_LOGLEVEL", "warn")
        out = self.log.open("ab") if self.log else None
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "bridge", "worker", "-l", level, *self.args],
                                         env={**child_env(self.settings), "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                         stderr=out)
        finally:
            if out:
                out.close()
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()


@dataclass
class Stack:
    settings: Settings
    http: TestClient
    workers: list[Worker] = field(default_factory=list)

    def worker(self) -> Worker:
        worker = Worker(self.settings).start()
        self.workers.append(worker)
        return worker

    def partner(self, dest: str, types: list[int] | None = None, name: str | None = None,
                delivery: dict[str, Any] | None = None, **subscribe: Any) -> str:
        answer = self.http.post("/admin/v1/partners", headers=ADMIN, json={
            "name": name or f"p-{uuid.uuid4().hex[:6]}", "userId": "u", "eventTypes": None,
            "delivery": delivery or {}})
        assert answer.status_code == 201, answer.text
        body = answer.json()
        client = ArtemisClient(self.http, body["appKey"], body["appSecret"])
        result = client.post(SUBSCRIBE, {"eventTypes": types or [196883], "eventDest": dest, **subscribe})
        assert result.json()["code"] == "0", result.text
        return str(body["id"])

    def push(self, event_id: str, template: str = "acs_card_196883_event_acs.json", **changes: Any) -> None:
        body = copy.deepcopy(payload(template))
        body["params"]["events"][0].update(eventId=event_id, **changes)
        answer = self.http.post("/eventRcv", json=body)
        assert answer.status_code == 200, answer.text


@contextmanager
def running_stack(settings: Settings) -> Iterator[Stack]:
    with TestClient(create_app(settings)) as http:
        stack = Stack(settings, http)
        try:
            yield stack
        finally:
            for worker in stack.workers:
                worker.stop()


def read_topic(settings: Settings, logical: str, decode: Callable[[bytes], Any] = json.loads,
               until: Callable[[list[Any]], bool] | None = None, timeout: float = 60) -> list[Any]:
    """Records of a bridge topic from the beginning, until ``until(records)`` or quiet."""
    consumer = Consumer(client_config(settings, **{"group.id": f"read-{uuid.uuid4().hex}",
                                               "auto.offset.reset": "earliest"}))
    consumer.subscribe([settings.topic_prefix + logical])
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.3)
            if message is not None and message.error() is None:
                records.append(decode(message.value()))
                quiet_since = time.monotonic()
                if until is not None and until(records):
                    break
            elif until is None and records and time.monotonic() - quiet_since > 3:
                break
    finally:
        consumer.close()
    return records


def outcomes(settings: Settings, until: Callable[[list[Any]], bool] | None = None,
             timeout: float = 60) -> list[dict[str, Any]]:
    return read_topic(settings, "outcomes", decode_outcome, until, timeout)
