"""The worker supervisor's rules, with stages that need no broker."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from bridge.runtime.worker import Stage, Worker, supervise
from bridge.settings import Settings

SETTINGS = Settings(worker_metrics_port=0)


def _until_stopped(name: str, seen: list[str]) -> Stage:
    async def run(worker: Worker) -> None:
        await worker.stop.wait()
        await asyncio.sleep(0)  # a drain step
        seen.append(name)

    return Stage(name, run)


async def test_a_stage_that_raises_stops_the_others_and_exits_1(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def broken(worker: Worker) -> None:
        await asyncio.sleep(0)
        raise ValueError("corrupt state")

    code = await supervise(SETTINGS, [_until_stopped("routing", seen), Stage("delivery", broken)])
    assert code == 1 and seen == ["routing"]
    assert "stage delivery died: ValueError: corrupt state" in caplog.text


async def test_a_stage_that_returns_on_its_own_is_a_dead_stage(caplog: pytest.LogCaptureFixture) -> None:
    async def quits(worker: Worker) -> None:
        return None

    assert await supervise(SETTINGS, [_until_stopped("routing", []), Stage("analytics", quits)]) == 1
    assert "stage analytics stopped on its own" in caplog.text


async def test_sigterm_drains_every_stage_and_exits_0(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.worker")
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, os.kill, os.getpid(), signal.SIGTERM)
    try:
        code = await supervise(SETTINGS, [_until_stopped("routing", seen), _until_stopped("delivery", seen)])
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    assert code == 0 and sorted(seen) == ["delivery", "routing"]
    assert "SIGTERM: stopping the stages" in caplog.text and "worker stopped (exit code 0)" in caplog.text


async def test_a_stage_failing_while_draining_exits_1() -> None:
    async def fails_on_stop(worker: Worker) -> None:
        await worker.stop.wait()
        raise RuntimeError("could not commit")

    async def dies(worker: Worker) -> None:
        raise ValueError("first")

    assert await supervise(SETTINGS, [Stage("delivery", fails_on_stop), Stage("routing", dies)]) == 1
