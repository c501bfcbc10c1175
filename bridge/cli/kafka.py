"""``event-bridge kafka`` (a local broker) and ``event-bridge topics``."""

from __future__ import annotations

import subprocess
from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail, overridden_settings
from bridge.errors import BridgeError
from bridge.settings import get_settings

kafka_app = typer.Typer(help="A local single-node Apache Kafka (KRaft) for development and tests.",
                        no_args_is_help=True)
topics_app = typer.Typer(help="The bridge's Kafka topics.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")

PortOpt = Annotated[int | None, typer.Option("--port", help="Broker port (default BRIDGE_KAFKA_PORT, 9092).")]


def _local(port: int | None, sasl_ssl_port: int | None = None) -> Any:
    from bridge.ops.localkafka import LocalKafka

    settings = overridden_settings(kafka_port=port)
    return LocalKafka(settings.cache_dir, settings.kafka_port, settings.kafka_heap, sasl_ssl_port)


def _print_status(status: Any) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("version", status.version)
    table.add_row("address", status.address)
    table.add_row("pid", str(status.pid) if status.pid else "-")
    table.add_row("running", "[green]yes[/]" if status.running else "[red]no[/]")
    table.add_row("ready", "[green]yes[/]" if status.ready else "[red]no[/]")
    table.add_row("log", status.log_file)
    table.add_row("data", status.data_dir)
    console.print(table)


@kafka_app.command("start")
def kafka_start(
    port: PortOpt = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start on empty data (when not running).")] = False,
    sasl_ssl_port: Annotated[int | None, typer.Option(
        "--sasl-ssl-port", help="Also listen here with SASL_SSL (SCRAM, a generated CA and password).")] = None,
) -> None:
    """Fetch (once), format (once) and start the broker; a no-op if it already runs."""
    broker = _local(port, sasl_ssl_port)
    if fresh and broker.running_pid() is None:
        import shutil

        # Test runs create thousands of uniquely named topics; a broker that reloads them all
        # starts slowly, so `make test` starts from empty data.
        shutil.rmtree(broker.home, ignore_errors=True)
    try:
        if not broker.fetched():
            with console.status(f"fetching Kafka {broker.version} from Maven Central…"):
                broker.fetch()
        with console.status(f"starting Kafka {broker.version} on {broker.bootstrap}…"):
            status, started = broker.start()
    except BridgeError as exc:
        raise fail(exc) from None
    console.print(
        f"Kafka {status.version} {'started' if started else 'already running'} on "
        f"{status.address} (pid {status.pid})"
    )
    if broker.sasl_ssl_port is not None:
        console.print(f"SASL_SSL on 127.0.0.1:{broker.sasl_ssl_port}; client settings (with the generated "
                      f"password) in {broker.client_env_file}", highlight=False)


@kafka_app.command("stop")
def kafka_stop(port: PortOpt = None) -> None:
    """Stop the broker cleanly and wait until it has exited."""
    broker = _local(port)
    console.print("stopped" if broker.stop() else f"no broker running on port {broker.port}")


@kafka_app.command("status")
def kafka_status(port: PortOpt = None) -> None:
    """Version, address, pid and readiness. Exit code 0 only when ready."""
    status = _local(port).status()
    _print_status(status)
    raise typer.Exit(0 if status.ready else 1)


@kafka_app.command("logs")
def kafka_logs(
    port: PortOpt = None,
    lines: Annotated[int, typer.Option("-n", "--lines")] = 50,
    follow: Annotated[bool, typer.Option("-f", "--follow")] = False,
) -> None:
    """The broker's log."""
    broker = _local(port)
    if follow:
        subprocess.run(["tail", "-n", str(lines), "-F", str(broker.log_file)])
    else:
        console.print(broker.tail(lines), highlight=False, markup=False)


# --- topics ----------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the topic table; checks partition counts of existing ones."""
    from bridge.kafka.admin import ensure_topics

    try:
        reports = ensure_topics(get_settings())
    except BridgeError as exc:
        raise fail(exc) from None
    table = Table("topic", "partitions", "action")
    for report in reports:
        table.add_row(report.name, str(report.partitions),
                      "[green]created[/]" if report.action == "created" else "exists")
    console.print(table)


@topics_app.command("list")
def topics_list() -> None:
    """The topic table: names, keys, partitions, retention."""
    from bridge.topics import topic_table

    table = Table("topic", "key", "partitions", "retention")
    for spec in topic_table(get_settings()).values():
        retention = f"{spec.retention_ms // 3_600_000} h"
        if spec.compacted:
            retention = f"compacted, {retention}" if spec.expiring else "compacted"
        table.add_row(spec.name, spec.key, str(spec.partitions), retention)
    console.print(table)
