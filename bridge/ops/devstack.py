"""``event-bridge dev``: a local broker, the topics, api and worker, until Ctrl-C.

Development secrets are generated here and only here: a random admin token per run, and a secret
key kept in the cache directory (mode 0600) so partner secrets stay readable across runs.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from cryptography.fernet import Fernet
from pydantic import SecretStr
from rich.console import Console

from bridge.errors import BridgeError
from bridge.kafka.admin import ensure_topics
from bridge.ops.localkafka import LocalKafka
from bridge.settings import Settings, child_env


def dev_secret_key(cache_dir: Path) -> str:
    """The development secret key, created once with owner-only permissions."""
    path = cache_dir / "dev" / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


class DevStack:
    """Starts what is missing, runs the processes, stops what it started."""

    def __init__(self, settings: Settings, console: Console) -> None:
        self.console = console
        self.broker = LocalKafka(settings.cache_dir, settings.kafka_port, settings.kafka_heap)
        self.settings = settings.model_copy(
            update={
                "mode": "dev",
                "kafka_bootstrap": self.broker.bootstrap,
                "admin_token": settings.admin_token or SecretStr(secrets.token_urlsafe(24)),
                "secret_key": settings.secret_key or SecretStr(dev_secret_key(settings.cache_dir)),
                # Local demo partners listen on loopback, which the URL policy refuses by default.
                "dest_allow": settings.dest_allow or ["127.0.0.0/8"],
                "worker_metrics_port": settings.worker_metrics_port,
            }
        )
        self.children: list[subprocess.Popen[bytes]] = []
        self._stopping = False

    def _spawn(self, *args: str, log_to: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log_to, "ab") if log_to else None  # noqa: SIM115 - lives as long as the child
        proc = subprocess.Popen([sys.executable, "-m", "bridge", *args], env=child_env(self.settings),
                                stdout=out, stderr=subprocess.STDOUT if out else None)
        self.children.append(proc)
        return proc

    def run(self, demo: bool = False) -> None:
        if demo and "retry_schedule" not in self.settings.model_fields_set:
            # A day-long schedule shows no dead letters in a demo; a short one does, within a minute.
            self.settings = self.settings.model_copy(update={"retry_schedule": [1, 2, 4, 8]})
        with self.console.status(f"starting Kafka {self.broker.version} on {self.broker.bootstrap}…"):
            _, started_broker = self.broker.start()
        self.console.print(f"Kafka {self.broker.version} on {self.broker.bootstrap}"
                           f" ({'started' if started_broker else 'already running'})")
        try:
            ensure_topics(self.settings)
            # With --demo the screen is a live table; the processes' logs go to files.
            logs = self.settings.cache_dir / "dev" if demo else None
            if logs:
                logs.mkdir(parents=True, exist_ok=True)
            self._spawn("api", log_to=logs / "api.log" if logs else None)
            self._spawn("worker", "-l", "warn", log_to=logs / "worker.log" if logs else None)
            if logs:
                self.console.print(f"logs: {logs / 'api.log'}, {logs / 'worker.log'} "
                                   "(`send fail` lines are in the worker's)")
            base = f"http://{self.settings.http_host}:{self.settings.http_port}"
            assert self.settings.admin_token is not None
            self.console.print(
                f"api on {base}  (docs {base}/docs, metrics {base}/metrics)\n"
                f"admin token for this run: {self.settings.admin_token.get_secret_value()}\n"
                "Ctrl-C stops everything this command started."
            )
            if demo:
                self._demo()
            else:
                self._wait()
        finally:
            self._stop_children()
            if started_broker:
                with self.console.status("stopping Kafka…"):
                    self.broker.stop()
                self.console.print("Kafka stopped")

    def _demo(self) -> None:
        """Demo partners, simulated traffic and a live summary, until Ctrl-C or a process dies."""
        import asyncio

        from bridge.ops.demo import Demo

        async def main() -> None:
            demo = asyncio.create_task(Demo(self.settings, self.console).run())
            while not demo.done():
                self._check_children()
                await asyncio.sleep(0.5)
            await demo

        self._on_sigterm()
        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            self.console.print("\nstopping…")

    def _on_sigterm(self) -> None:
        def on_term(_sig: int, _frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)

    def _check_children(self) -> None:
        for proc in self.children:
            if proc.poll() is not None:
                name = " ".join(str(a) for a in proc.args[3:])  # type: ignore[index]
                raise BridgeError(f"`event-bridge {name}` exited with code {proc.returncode}")

    def _wait(self) -> None:
        self._on_sigterm()
        try:
            while True:
                self._check_children()
                time.sleep(0.5)
        except KeyboardInterrupt:
            self.console.print("\nstopping…")

    def _stop_children(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
