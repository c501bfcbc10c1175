"""A local single-node Apache Kafka (KRaft) for development and tests.

The broker comes from Maven Central: ``resources/kafka-pom.xml`` pins ``org.apache.kafka:kafka_2.13``
and ``mvn dependency:copy-dependencies`` copies its runtime classpath into
``<cache_dir>/kafka-<version>/libs`` once. Each broker instance (one per port) keeps its files in
``<cache_dir>/broker-<port>/``: ``server.properties``, ``data/``, ``broker.log`` and ``state.json``
(pid, version, paths). ``start`` is idempotent and, after a crash or SIGKILL, restarts on the same data.

With ``sasl_ssl_port`` the broker also listens there with SASL_SSL (SCRAM-SHA-256/512) behind a
certificate from a CA generated for this broker (``tls/ca.pem``, valid for 127.0.0.1 and localhost);
the SCRAM user and its generated password are in ``client.env`` (mode 0600), as the ``BRIDGE_KAFKA_*``
settings a client needs. The PLAINTEXT listener stays, for the broker's own readiness checks.
Over 400 lines: one broker's whole life cycle (fetch, configure, TLS and SCRAM, start, stop,
status), a development tool apart from the product's data flow.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import re
import secrets
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

from bridge.errors import BridgeError, LocalKafkaError
from bridge.kafka.config import check_connection, client_config
from bridge.settings import Settings

#: The SCRAM user ``start --sasl-ssl-port`` creates.
SCRAM_USER = "bridge"
SCRAM_MECHANISM = "SCRAM-SHA-512"

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
    sasl_ssl_port: int | None = None


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


def _plain(bootstrap: str) -> Settings:
    """Settings for a local broker's own PLAINTEXT listener, whatever BRIDGE_KAFKA_* says."""
    return Settings.model_construct(kafka_bootstrap=bootstrap)


def metadata_ready(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a (PLAINTEXT) broker at ``bootstrap`` answers a metadata request."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(_plain(bootstrap), log_level=0, logger=_quiet))
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

    def __init__(self, cache_dir: Path, port: int = 9092, heap: str = "512m",
                 sasl_ssl_port: int | None = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.port = port
        self.heap = heap
        self.sasl_ssl_port = sasl_ssl_port
        self.version = pinned_version()
        self.libs = self.cache_dir / f"kafka-{self.version}" / "libs"
        self.home = self.cache_dir / f"broker-{port}"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "broker.log"
        self.state_file = self.home / "state.json"
        self.controller_port = port + 1
        self.tls_dir = self.home / "tls"
        self.client_env_file = self.home / "client.env"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- SASL_SSL listener ------------------------------------------------------------------

    def client_env(self) -> dict[str, str]:
        """The ``BRIDGE_KAFKA_*`` settings of a client of the SASL_SSL listener (has the password)."""
        try:
            lines = self.client_env_file.read_text().splitlines()
        except OSError as exc:
            raise LocalKafkaError(f"no SASL_SSL credentials in {self.client_env_file}: start the broker "
                                  "with --sasl-ssl-port") from exc
        return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))

    def client_settings(self, **changes: object) -> Settings:
        """Settings that reach this broker's SASL_SSL listener (``changes`` on top)."""
        env = self.client_env()
        return Settings(**{name.removeprefix("BRIDGE_").lower(): value for name, value in env.items()},
                        **changes)

    def _ensure_tls(self) -> None:
        """A CA and a broker certificate for 127.0.0.1 / localhost, made once per broker home."""
        if (self.tls_dir / "broker.pem").exists():
            return
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"event-bridge local CA {self.port}")])
        ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=365))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, key_cert_sign=True, crl_sign=True,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                    critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        (self.tls_dir / "ca.pem").write_bytes(ca.public_bytes(pem))
        # Kafka's PEM key store: an unencrypted PKCS#8 key, then the chain.
        broker = self.tls_dir / "broker.pem"
        broker.touch(mode=0o600)
        broker.write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            + cert.public_bytes(pem) + ca.public_bytes(pem))

    def _ensure_credentials(self) -> None:
        """The SCRAM user's password, generated once per broker home, as client settings."""
        if self.client_env_file.exists():
            return
        assert self.sasl_ssl_port is not None
        self.client_env_file.touch(mode=0o600)
        self.client_env_file.write_text("\n".join([
            "# Settings of a client of the local broker's SASL_SSL listener (generated; secret).",
            f"BRIDGE_KAFKA_BOOTSTRAP=127.0.0.1:{self.sasl_ssl_port}",
            "BRIDGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
            f"BRIDGE_KAFKA_SASL_MECHANISM={SCRAM_MECHANISM}",
            f"BRIDGE_KAFKA_SASL_USERNAME={SCRAM_USER}",
            f"BRIDGE_KAFKA_SASL_PASSWORD={secrets.token_urlsafe(24)}",
            f"BRIDGE_KAFKA_SSL_CA_FILE={self.tls_dir / 'ca.pem'}",
            "",
        ]))

    def _upsert_scram_user(self, timeout: float = 30.0) -> None:
        """Create (or reset) the SCRAM user over the PLAINTEXT listener, then log in with it."""
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        password = self.client_env()["BRIDGE_KAFKA_SASL_PASSWORD"].encode()
        admin = AdminClient(client_config(_plain(self.bootstrap)))
        try:
            # One request per mechanism: Kafka refuses two changes to one user in one request.
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsert = UserScramCredentialUpsertion(SCRAM_USER, ScramCredentialInfo(mechanism, 8192), password)
                for future in admin.alter_user_scram_credentials([upsert], request_timeout=timeout).values():
                    future.result()
        except Exception as exc:  # KafkaException: the broker refused; say which step failed
            raise LocalKafkaError(f"creating the SCRAM user {SCRAM_USER!r} failed: {exc}") from exc
        deadline = time.monotonic() + timeout
        while True:  # SCRAM credentials reach the SASL_SSL listener through the metadata log
            try:
                check_connection(self.client_settings(), timeout=5.0)
                return
            except BridgeError as exc:
                if time.monotonic() > deadline:
                    raise LocalKafkaError(f"the SASL_SSL listener on port {self.sasl_ssl_port} refuses "
                                          f"the generated credentials: {exc}") from exc
                time.sleep(0.5)

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

    def _sasl_ssl_config(self) -> list[str]:
        if self.sasl_ssl_port is None:
            return []
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={jaas}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.tls_dir / 'broker.pem'}",
        ]

    def _write_config(self) -> Path:
        props = self.home / "server.properties"
        secure = self.sasl_ssl_port is not None
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        if secure:
            listeners.append(f"SASL_SSL://127.0.0.1:{self.sasl_ssl_port}")
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners={','.join(listeners)},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={','.join(listeners)}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
                    + (",SASL_SSL:SASL_SSL" if secure else ""),
                    *self._sasl_ssl_config(),
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
            state = self.read_state()
            running_with = state.sasl_ssl_port if state else None
            if self.sasl_ssl_port is not None and running_with != self.sasl_ssl_port:
                raise LocalKafkaError(
                    f"the broker on port {self.port} runs without a SASL_SSL listener on "
                    f"{self.sasl_ssl_port}: stop it first (`event-bridge kafka stop --port {self.port}`)")
            self.sasl_ssl_port = running_with
            return self.wait_ready(wait), False
        ports = [self.port, self.controller_port, *([self.sasl_ssl_port] if self.sasl_ssl_port else [])]
        if any(_port_in_use(p) for p in ports):
            raise LocalKafkaError(
                f"port {' or '.join(map(str, ports))} on 127.0.0.1 is taken by another "
                f"process: stop it (`ss -ltnp | grep {self.port}`) or choose another port "
                "(--port / BRIDGE_KAFKA_PORT)"
            )
        java = self.check_java()
        self.fetch()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.sasl_ssl_port is not None:
            self._ensure_tls()
            self._ensure_credentials()
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
                                          str(self.log_file), str(self.data_dir), time.time(),
                                          self.sasl_ssl_port)))
        )
        status = self.wait_ready(wait, proc)
        if self.sasl_ssl_port is not None:
            self._upsert_scram_user()
        return status, True

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
