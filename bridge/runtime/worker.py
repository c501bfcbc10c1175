"""The worker process: runs the stages under one supervisor until SIGTERM/SIGINT or a stage dies.

Stages (routing with correlation, the analytics feed, delivery) are coroutines that run until the
worker's ``stop`` event is set, then drain: a transactional loop finishes or aborts its open
transaction and closes its consumer; delivery lets in-flight pushes settle (for a bounded time)
and commits only what is settled, so what is left is redone by the partition's next owner.

What the stages share, built once per worker on first use:

- one ``RegistryView`` (a consumer thread reading the compacted registry topics);
- one idempotent ``AsyncProducer`` for non-transactional writes (delivery's outcomes, retry
  tiers, dead letters, breaker states). The routing and analytics loops keep their own
  transactional producers: a transactional producer has one transaction open at a time, and
  each loop commits its consumed offsets in its own transactions, so they cannot share one
  with each other nor with non-transactional writes.

A stage that returns or raises while the worker is not stopping is a dead stage: the worker logs
which one and why, stops the others, and exits non-zero, so that the orchestrator restarts the
whole process instead of keeping a worker that no longer does one of its jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import uvloop
from prometheus_client import start_http_server

from bridge.kafka.producer import AsyncProducer
from bridge.registry.view import RegistryView
from bridge.settings import Settings

log = logging.getLogger("bridge.worker")

#: How long the stages get to drain after a stop before the process exits anyway (inside the
#: 30 s an orchestrator such as Kubernetes waits by default between SIGTERM and SIGKILL).
DRAIN_S = 25.0


@dataclass(frozen=True)
class Stage:
    """A named stage: ``run`` works until ``worker.stop`` is set, then drains and returns."""

    name: str
    run: Callable[[Worker], Awaitable[None]]


class Worker:
    """What the stages of one process share: settings, the stop signal, the view and the producer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = asyncio.Event()
        self._view: RegistryView | None = None
        self._view_ready: asyncio.Task[None] | None = None
        self._producer: AsyncProducer | None = None

    async def registry(self) -> RegistryView:
        """The worker's one registry view, started on first use and loaded before it is returned.

        Raises ``CancelledError`` when the worker stops before the view is loaded: the stage
        had not begun, so there is nothing to drain.
        """
        if self._view is None:
            self._view = RegistryView(self.settings).start(wait_caught_up=None)
            self._view_ready = asyncio.ensure_future(asyncio.to_thread(self._view.wait_ready, 120.0))
        assert self._view_ready is not None
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([self._view_ready, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not self._view_ready.done():
            raise asyncio.CancelledError
        self._view_ready.result()  # raises when the view could not load
        return self._view

    @property
    def producer(self) -> AsyncProducer:
        """The worker's one non-transactional producer (created on first use)."""
        if self._producer is None:
            self._producer = AsyncProducer(self.settings)
        return self._producer

    def close(self) -> None:
        """After every stage has returned: flush the producer, stop the view."""
        if self._producer is not None:
            self._producer.close()
        if self._view is not None:
            self._view.stop()


def _serve_metrics(settings: Settings) -> None:
    if not settings.worker_metrics_port:
        return
    try:
        start_http_server(settings.worker_metrics_port, addr=settings.http_host)
    except OSError as exc:  # another worker on this host already serves it
        log.warning("worker metrics port %d unavailable (%s); metrics not served",
                    settings.worker_metrics_port, exc)


async def supervise(settings: Settings, stages: Sequence[Stage], drain_s: float = DRAIN_S) -> int:
    """Run ``stages`` until a signal (exit code 0) or until one of them dies (exit code 1)."""
    worker = Worker(settings)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:  # a second signal: the operator does not want to wait for the drain
            log.warning("second %s: exiting without waiting for the drain", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(1)
        log.info("%s: stopping the stages (drain up to %.0f s)", signal.Signals(signum).name, drain_s)
        worker.stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    _serve_metrics(settings)
    tasks = [asyncio.create_task(stage.run(worker), name=stage.name) for stage in stages]
    log.info("worker started: stages %s (pid %d)", ",".join(s.name for s in stages), os.getpid())
    stopping = asyncio.create_task(worker.stop.wait())
    done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    reported: set[asyncio.Task[None]] = set()
    for task in done:
        if task is stopping or worker.stop.is_set():
            continue
        code = 1
        reported.add(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("stage %s died: %s: %s; stopping the worker", task.get_name(),
                      type(error).__name__, error, exc_info=error)
        else:
            log.error("stage %s stopped on its own; stopping the worker", task.get_name())
    worker.stop.set()
    stopping.cancel()
    running = [t for t in tasks if not t.done()]
    if running:
        _, late = await asyncio.wait(running, timeout=drain_s)
        if late:
            # A stage stuck in a blocking client call cannot be cancelled; its offsets are not
            # committed, so the next owner redoes its work.
            log.error("stages %s did not drain within %.0f s; exiting",
                      ",".join(t.get_name() for t in late), drain_s)
            logging.shutdown()
            os._exit(1)
    for task in tasks:
        if task not in reported and not task.cancelled() and task.exception() is not None:
            log.error("stage %s failed while draining: %s", task.get_name(), task.exception(),
                      exc_info=task.exception())
            code = 1
    await asyncio.to_thread(worker.close)
    log.log(logging.ERROR if code else logging.INFO, "worker stopped (exit code %d)", code)
    return code


def run(settings: Settings, stages: Sequence[Stage]) -> int:
    """Run the worker in the foreground (on uvloop); returns the process's exit code."""
    return uvloop.run(supervise(settings, stages))
