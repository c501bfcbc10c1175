"""A local single-node Apache Kafka (KRaft) for development and tests.

The broker comes from Maven Central: ``resources/kafka-pom.xml`` pins ``org.apache.kafka:kafka_2.13``
and ``mvn dependency:copy-dependencies`` copies its runtime classpath into
``<cache_dir>/kafka-<version>/libs`` once. Each broker instance (one per port) keeps its files in
``<cache_dir>/broker-<port>/``: ``server.properties``, ``data/``, ``broker.log`` and ``state.json``
(pid, version, paths). ``start`` is idempotent and, after a crash or SIGKILL, restarts on the same data.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from bridge.errors import LocalKafkaError

POM = resources.files("bridge") / "resources" / "kafka-pom.xml"

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def pinned_version() -> str:
    """The Kafka version pinned in the pom (the one source of truth)."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise LocalKafkaError(f"no <kafka.version> in {POM}")
    return match.group(1).strip()


@dataclass
class BrokerState:
    """What ``start`` records about a running (or last running) broker."""

    pid: int
    port: int
    version: str
    cluster_id: str
    log_file: str
    data_dir: str
    started_at: float


@dataclass
class BrokerStatus:
    """What ``status`` reports."""

    version: str
    address: str
    pid: int | None
    running: bool
    ready: bool
    log_file: str
    data_dir: str


def _kafka_uuid() -> str:
    """A cluster id in Kafka's format (base64url of 16 random bytes, no padding)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):  # the CLI would read it as an option
            return value


def _pid_is_broker(pid: int, config: Path | None = None) -> bool:
    """True if ``pid`` is alive and is a ``kafka.Kafka`` JVM, started with ``config`` if given.

    Checking the config path (one per port) guards against pid reuse: an old state file's pid may
    now belong to another instance's broker, which must never be stopped by mistake.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):  # zombie: already dead
                return False
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and (config is None or str(config).encode() in cmdline)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def metadata_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout: not ready, which is the answer
        return False
    return bool(metadata.brokers)


class _QuietLogger:
    """librdkafka logs every refused connection while we poll for readiness; we poll on purpose."""

    def log(self, *args: object, **kwargs: object) -> None:
        return None


_quiet = _QuietLogger()


class LocalKafka:
    """One local broker instance, identified by its port."""

    def __init__(self, cache_dir: Path, port: int = 9092, heap: str = "512m") -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.port = port
        self.heap = heap
        self.version = pinned_version()
        self.libs = self.cache_dir / f"kafka-{self.version}" / "libs"
        self.home = self.cache_dir / f"broker-{port}"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "broker.log"
        self.state_file = self.home / "state.json"
        self.controller_port = port + 1

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- prerequisites ---------------------------------------------------------------------

    @staticmethod
    def check_java() -> str:
        """Path of a Java >= 17, or a LocalKafkaError that says what to install."""
        java = shutil.which("java")
        if not java:
            raise LocalKafkaError(
                "java not found on PATH: install a Java 17+ runtime "
                "(e.g. `apt-get install openjdk-17-jre-headless`)"
            )
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        major = int(match.group(1)) if match else 0
        if major == 1 and match and match.group(2):  # "1.8" style
            major = int(match.group(2))
        if major < 17:
            raise LocalKafkaError(f"Kafka 4 needs Java 17 or newer; {java} is {out.splitlines()[0]!r}")
        return java

    def fetched(self) -> bool:
        return (self.libs / ".complete").exists()

    def fetch(self) -> Path:
        """Resolve the broker's classpath with Maven into the cache, once."""
        if self.fetched():
            return self.libs
        mvn = shutil.which("mvn")
        if not mvn:
            raise LocalKafkaError(
                "mvn not found on PATH: install Apache Maven (e.g. `apt-get install maven`); "
                "it fetches Kafka from Maven Central once"
            )
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=self.libs.parent))
        with resources.as_file(POM) as pom:
            proc = subprocess.run(
                [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                capture_output=True, text=True,
            )
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise LocalKafkaError(
                f"fetching Kafka {self.version} from Maven Central failed (mvn exit "
                f"{proc.returncode}); check network access to Maven Central or your "
                f"~/.m2/settings.xml mirror.\n{tail}"
            )
        (staging / ".complete").write_text(self.version)
        if self.libs.exists():  # a concurrent fetch won; keep theirs
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(self.libs)
        return self.libs

    # --- state ------------------------------------------------------------------------------

    def read_state(self) -> BrokerState | None:
        try:
            return BrokerState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def running_pid(self) -> int | None:
        state = self.read_state()
        if state and _pid_is_broker(state.pid, self.home / "server.properties"):
            return state.pid
        return None

    def status(self) -> BrokerStatus:
        pid = self.running_pid()
        return BrokerStatus(
            version=self.version,
            address=self.bootstrap,
            pid=pid,
            running=pid is not None,
            ready=pid is not None and metadata_ready(self.bootstrap),
            log_file=str(self.log_file),
            data_dir=str(self.data_dir),
        )

    # --- lifecycle --------------------------------------------------------------------------

    def _write_config(self) -> Path:
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    # The bridge creates its own topics with the partition counts it checks.
                    "auto.create.topics.enable=false",
                    # Single node: every internal topic has one replica.
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "default.replication.factor=1",
                    "min.insync.replicas=1",
                    "num.partitions=1",
                    # No reason to wait for more members on a one-node dev cluster.
                    "group.initial.rebalance.delay.ms=0",
                    "log.cleaner.min.compaction.lag.ms=0",
                    # A crashed worker's open transaction holds back read_committed readers until
                    # it times out; look for timed-out transactions every second, not every 10 s.
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
                    "",
                ]
            )
        )
        (self.home / "log4j2.properties").write_text(LOG4J2)
        return props

    def _java_cmd(self, java: str, main: str, *args: str) -> list[str]:
        return [
            java,
            f"-Xms{self.heap}", f"-Xmx{self.heap}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp", f"{self.libs}/*",
            main, *args,
        ]

    def start(self, wait: float = 180.0) -> tuple[BrokerStatus, bool]:
        """Start the broker unless it runs; returns (status, started_now)."""
        if self.running_pid() is not None:
            return self.wait_ready(wait), False
        if _port_in_use(self.port) or _port_in_use(self.controller_port):
            raise LocalKafkaError(
                f"port {self.port} or {self.controller_port} on 127.0.0.1 is taken by another "
                f"process: stop it (`ss -ltnp | grep {self.port}`) or choose another port "
                "(--port / BRIDGE_KAFKA_PORT)"
            )
        java = self.check_java()
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self._write_config()
        state = self.read_state()
        cluster_id = state.cluster_id if state else ""
        if not (self.data_dir / "meta.properties").exists():
            cluster_id = _kafka_uuid()
            fmt = subprocess.run(
                self._java_cmd(java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                               "-c", str(props), "--ignore-formatted"),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise LocalKafkaError(f"formatting {self.data_dir} failed:\n{fmt.stdout}{fmt.stderr}")
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self._java_cmd(java, "kafka.Kafka", str(props)),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI and ignores its Ctrl-C
            )
        self.state_file.write_text(
            json.dumps(asdict(BrokerState(proc.pid, self.port, self.version, cluster_id,
                                          str(self.log_file), str(self.data_dir), time.time())))
        )
        return self.wait_ready(wait, proc), True

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> BrokerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise LocalKafkaError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self.tail(20)}"
                )
            if metadata_ready(self.bootstrap, timeout=1.0):
                return self.status()
            time.sleep(0.3)
        raise LocalKafkaError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s; "
            f"last lines of {self.log_file}:\n{self.tail(20)}"
        )

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after ``timeout``). False if not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_is_broker(pid, self.home / "server.properties"):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.2)
        return True

    def tail(self, lines: int = 50) -> str:
        try:
            with open(self.log_file, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 200 * lines))
                return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"
