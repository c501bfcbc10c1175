"""The ``event-bridge`` command line (typer). Thin: every command calls the same code the API uses."""

from __future__ import annotations

import logging
import subprocess
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bridge.errors import BridgeError
from bridge.settings import Settings, get_settings

app = typer.Typer(
    name="event-bridge",
    help="Kafka-backed, Artemis-compatible fan-out of security-platform events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
kafka_app = typer.Typer(help="A local single-node Apache Kafka (KRaft) for development and tests.",
                        no_args_is_help=True)
topics_app = typer.Typer(help="The bridge's Kafka topics.", no_args_is_help=True)
partner_app = typer.Typer(help="Partners: create, list, show, disable, rotate secrets.",
                          no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(partner_app, name="partner")
dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(topics_app, name="topics")

console = Console()
err = Console(stderr=True)


def _fail(exc: BridgeError | str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(code)


def _settings(**updates: Any) -> Settings:
    return get_settings().model_copy(update={k: v for k, v in updates.items() if v is not None})


# --- kafka -----------------------------------------------------------------------------------

PortOpt = Annotated[int | None, typer.Option("--port", help="Broker port (default BRIDGE_KAFKA_PORT, 9092).")]


def _local(port: int | None, sasl_ssl_port: int | None = None) -> Any:
    from bridge.localkafka import LocalKafka

    settings = _settings(kafka_port=port)
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
        raise _fail(exc) from None
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
    from bridge.kafka import ensure_topics

    try:
        reports = ensure_topics(get_settings())
    except BridgeError as exc:
        raise _fail(exc) from None
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


# --- partners -------------------------------------------------------------------------------


def _with_partners(action: Any) -> Any:
    """Run ``action(service)`` against Kafka with a loaded registry (same code path as the API)."""
    import asyncio

    from bridge.kafka import AsyncProducer
    from bridge.partners import PartnerService
    from bridge.registry import RegistryView, RegistryWriter

    settings = get_settings()

    async def main() -> Any:
        producer = AsyncProducer(settings)
        view = RegistryView(settings)
        try:
            await asyncio.to_thread(view.start, 20.0)
            return await action(PartnerService(settings, view, RegistryWriter(settings, producer, view)))
        finally:
            view.stop()
            producer.close()

    try:
        return asyncio.run(main())
    except BridgeError as exc:
        raise _fail(exc) from None


def _partner_table(partners: list[Any]) -> Table:
    table = Table("id", "name", "userId", "appKey", "eventTypes", "state", "statuses")
    for p in partners:
        types = "all" if p.event_types is None else ",".join(map(str, p.event_types))
        statuses = ("global" if p.delivery.push_statuses is None
                    else ",".join(map(str, p.delivery.push_statuses)))
        state = "[green]active[/]" if p.state == "active" else "[red]disabled[/]"
        table.add_row(p.id, p.name, p.user_id, p.app_key, types, state, statuses)
    return table


def _types_option(value: str) -> list[int] | None:
    if value.strip().lower() == "all":
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter("a comma-separated list of event type codes, or 'all'") from None


@partner_app.command("create")
def partner_create(
    name: Annotated[str, typer.Option(help="Display name.")],
    user_id: Annotated[str, typer.Option("--user-id", help="Platform user the partner acts as.")],
    event_types: Annotated[str, typer.Option(help="Permitted types: '196893,198914' or 'all'.")] = "all",
) -> None:
    """Create a partner and print its appKey and appSecret (shown only now)."""

    async def action(svc: Any) -> Any:
        return await svc.create(name, user_id, _types_option(event_types))

    partner, secret = _with_partners(action)
    console.print(_partner_table([partner]))
    console.print(f"appKey    {partner.app_key}\nappSecret {secret}   [dim](shown only now)[/]")


@partner_app.command("list")
def partner_list() -> None:
    """Every partner."""

    async def action(svc: Any) -> Any:
        return svc.list()

    console.print(_partner_table(_with_partners(action)))


@partner_app.command("show")
def partner_show(partner_id: str) -> None:
    """One partner, its delivery settings and subscriptions."""

    async def action(svc: Any) -> Any:
        return svc.get(partner_id), svc.view.subscriptions_of(partner_id)

    partner, subs = _with_partners(action)
    console.print(_partner_table([partner]))
    settings = Table("delivery setting", "value")
    for key, value in partner.public()["delivery"].items():
        settings.add_row(key, str(value))
    console.print(settings)
    table = Table("eventType", "eventDest", "subType", "eventLvl")
    for sub in subs:
        table.add_row(str(sub.event_type), sub.event_dest, str(sub.sub_type),
                      ",".join(map(str, sub.event_lvl)))
    console.print(table)


@partner_app.command("disable")
def partner_disable(partner_id: str) -> None:
    """Stop deliveries to a partner and refuse its API calls (subscriptions are kept)."""

    async def action(svc: Any) -> Any:
        return await svc.update(partner_id, {"state": "disabled"})

    console.print(_partner_table([_with_partners(action)]))


@partner_app.command("enable")
def partner_enable(partner_id: str) -> None:
    """Re-enable a disabled partner."""

    async def action(svc: Any) -> Any:
        return await svc.update(partner_id, {"state": "active"})

    console.print(_partner_table([_with_partners(action)]))


@partner_app.command("set")
def partner_set(
    partner_id: str,
    push_statuses: Annotated[str | None, typer.Option(help="e.g. 0,1,2,4 or 'global'.")] = None,
    linkage_mode: Annotated[str | None, typer.Option(help="separate or merged.")] = None,
    merge_wait: Annotated[float | None, typer.Option(help="Merged mode: seconds to wait for status 4.")] = None,
    picture_mode: Annotated[str | None, typer.Option(help="passthrough or attach.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Push timeout, seconds.")] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Pushes in flight at once.")] = None,
    max_batch: Annotated[int | None, typer.Option(
        help="Events one push may carry when several wait (1-50; 1 = one event per push).")] = None,
    ordered: Annotated[bool | None, typer.Option("--ordered/--unordered")] = None,
    signing: Annotated[bool | None, typer.Option("--signing/--no-signing")] = None,
    allow_unsigned_timestamp: Annotated[bool | None, typer.Option(
        "--allow-unsigned-timestamp/--require-signed-timestamp",
        help="Legacy: accept its Artemis calls without a signed x-ca-timestamp (off by default: "
             "such calls can be replayed later).")] = None,
) -> None:
    """Change a partner's delivery and correlation settings; they apply without re-subscription."""
    changes: dict[str, Any] = {}
    if push_statuses is not None:
        changes["pushStatuses"] = (None if push_statuses == "global"
                                   else [int(v) for v in push_statuses.split(",") if v.strip()])
    for key, value in (("linkageMode", linkage_mode), ("mergeWaitS", merge_wait),
                       ("pictureMode", picture_mode), ("timeoutS", timeout),
                       ("maxInFlight", max_in_flight), ("maxBatch", max_batch), ("ordered", ordered),
                       ("signing", signing)):
        if value is not None:
            changes[key] = value

    update: dict[str, Any] = {"delivery": changes}
    if allow_unsigned_timestamp is not None:
        update["allowUnsignedTimestamp"] = allow_unsigned_timestamp

    async def action(svc: Any) -> Any:
        return await svc.update(partner_id, update)

    partner = _with_partners(action)
    table = Table("delivery setting", "value")
    for key, value in partner.public()["delivery"].items():
        table.add_row(key, str(value))
    table.add_row("allowUnsignedTimestamp", str(partner.allow_unsigned_timestamp))
    console.print(table)


@partner_app.command("rotate-secret")
def partner_rotate_secret(partner_id: str) -> None:
    """A new appSecret; the old one stays valid for BRIDGE_SECRET_GRACE_HOURS."""

    async def action(svc: Any) -> Any:
        return await svc.rotate_secret(partner_id)

    partner, secret = _with_partners(action)
    old = [s for s in partner.secrets if s.expires_at]
    console.print(f"appKey    {partner.app_key}\nappSecret {secret}   [dim](shown only now)[/]")
    if old:
        import datetime as dt

        until = dt.datetime.fromtimestamp(max(s.expires_at for s in old)).isoformat(timespec="seconds")
        console.print(f"the previous secret stays valid until {until}")


# --- dead letters ---------------------------------------------------------------------------


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("an ISO time, e.g. 2026-11-29T08:00 or 2026-11-29T08:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


SinceOpt = Annotated[str | None, typer.Option(help="Only dead letters since this ISO time.")]
PartnerOpt = Annotated[str | None, typer.Option("--partner", help="Only this partner's.")]


StateOpt = Annotated[str | None, typer.Option(
    "--state", help="Only letters in this state: dead (never redriven) or redriven.")]


def _letter_state(letter: dict[str, Any]) -> str:
    import datetime as dt

    state = letter["state"]
    if state["state"] != "redriven":
        return "dead"
    at = dt.datetime.fromtimestamp(state["at"]).isoformat(timespec="seconds")
    text = f"redriven {at}" + (f" ×{state['times']}" if state.get("times", 1) > 1 else "")
    text += f" ({state['outcome']}" + (f" via {state['via']}" if state.get("via") else "") + ")"
    if letter["diedAgainAs"]:
        text += f", died again as {','.join(letter['diedAgainAs'])}"
    return text


@dlq_app.command("list")
def dlq_list(partner: PartnerOpt = None, since: SinceOpt = None, state: StateOpt = None) -> None:
    """Dead letters, oldest first, with their state (dead, or redriven when and how)."""
    import datetime as dt

    from bridge import readback

    try:
        letters = readback.dead_letters(get_settings(), partner, _since(since), state=state)
    except BridgeError as exc:
        raise _fail(exc) from None
    table = Table("id", "partner", "eventIds", "type", "status", "attempts", "last error", "dead at",
                  "state", "redrive of")
    for letter in letters:
        task = letter["task"]
        table.add_row(letter["id"], task["partner_id"], ",".join(task["event_ids"]),
                      str(task["event_type"]), str(task["status"]), str(letter["attempts"]),
                      f"{letter['last_error']} ({letter['last_status_code'] or '-'})",
                      dt.datetime.fromtimestamp(letter["dead_at"]).isoformat(timespec="seconds"),
                      _letter_state(letter), letter["redriveOf"] or "")
    console.print(table)
    counts = {name: sum(1 for x in letters if x["state"]["state"] == name)
              for name in readback.LETTER_STATES}
    console.print(f"{len(letters)} dead letters ({counts['dead']} dead, {counts['redriven']} redriven)")


@dlq_app.command("show")
def dlq_show(letter_id: str) -> None:
    """One dead letter in full (id from `dlq list`: partition:offset), with its state."""
    import json

    from bridge import readback

    try:
        letters = [d for d in readback.dead_letters(get_settings()) if d["id"] == letter_id]
    except BridgeError as exc:
        raise _fail(exc) from None
    if not letters:
        raise _fail(f"no dead letter {letter_id!r}")
    console.print_json(json.dumps(letters[0], ensure_ascii=False))


@dlq_app.command("redrive")
def dlq_redrive(
    partner: PartnerOpt = None,
    since: SinceOpt = None,
    to_stored_destination: Annotated[bool, typer.Option(
        "--to-stored-destination",
        help="Send each task to the URL it died at, not the partner's current subscription.")] = False,
    include_redriven: Annotated[bool, typer.Option(
        "--include-redriven", help="Also letters an earlier redrive settled.")] = False,
    letter_ids: Annotated[list[str] | None, typer.Option(
        "--id", help="Only this letter (partition:offset from `dlq list`), repeatable.")] = None,
) -> None:
    """Send dead letters again, routed by each partner's current subscription; settle them.

    Redriven tasks keep their delivery ids (partners can drop duplicates) and are marked
    X-Bridge-Replay: redrive. Letters whose type the partner no longer subscribes, or whose
    partner is disabled, are skipped with the reason and stay dead.
    """
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bridge import readback, redrive
    from bridge.kafka import AsyncProducer
    from bridge.registry import RegistryView

    settings = get_settings()
    try:
        letters = readback.dead_letters(settings, partner, _since(since),
                                        state=None if include_redriven else "dead")
    except BridgeError as exc:
        raise _fail(exc) from None
    if letter_ids:
        wanted = set(letter_ids)
        letters = [letter for letter in letters if letter["id"] in wanted]

    async def main() -> Any:
        view = RegistryView(settings)
        producer = AsyncProducer(settings)
        try:
            await asyncio.to_thread(view.start, 20.0)
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeRemainingColumn(), console=console) as progress:
                bar = progress.add_task("redriving", total=len(letters))
                return await redrive.run(settings, view, producer, letters,
                                         "stored" if to_stored_destination else "current",
                                         lambda n: progress.update(bar, completed=n))
        finally:
            view.stop()
            producer.close()

    try:
        report = asyncio.run(main())
    except BridgeError as exc:
        raise _fail(exc) from None
    where = "the URL each died at" if to_stored_destination else "each partner's current destination"
    console.print(f"re-enqueued {report.counts['sent']} dead letters (to {where})")
    table = Table("outcome", "letters", "reason")
    table.add_row("sent", str(report.counts["sent"]), "")
    if report.counts["duplicate"]:
        table.add_row("duplicate", str(report.counts["duplicate"]),
                      "same delivery as another letter of this redrive (settled, sent once)")
    for reason, count in sorted(report.skipped.items()):
        table.add_row("skipped", str(count), reason)
    console.print(table)


# --- doctor ---------------------------------------------------------------------------------


@app.command()
def doctor(partner_id: str) -> None:
    """The platform FAQ as a check list for one partner: what would stop its events, and where."""
    import asyncio

    from bridge import doctor as doc
    from bridge.registry import RegistryView

    settings = get_settings()

    async def main() -> list[Any]:
        view = RegistryView(settings)
        try:
            await asyncio.to_thread(view.start, 20.0)
            return await doc.diagnose(settings, view, partner_id)
        finally:
            view.stop()

    try:
        checks = asyncio.run(main())
    except BridgeError as exc:
        raise _fail(exc) from None
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    table = Table("", "question", "answer", title=f"doctor {partner_id}", show_lines=True)
    for check in checks:
        table.add_row(marks[check.verdict], check.question, check.detail)
    console.print(table)
    raise typer.Exit(1 if any(c.verdict == "fail" for c in checks) else 0)


# --- replay and export -----------------------------------------------------------------------


def _time(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    import datetime as dt

    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{name}: an ISO time, e.g. 2026-11-29T08:00 or 2026-11-29T08:00+08:00") from None
    return (moment if moment.tzinfo else moment.astimezone()).timestamp()


@app.command()
def replay(
    partner: Annotated[str, typer.Option("--partner", help="Partner id.")],
    from_time: Annotated[str | None, typer.Option(help="Start (ISO time).")] = None,
    from_offset: Annotated[list[str] | None, typer.Option(help="PARTITION:OFFSET, repeatable.")] = None,
    to_time: Annotated[str | None, typer.Option(help="End (ISO time; default: now).")] = None,
    event_types: Annotated[str | None, typer.Option(help="Only these types, comma-separated.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count per event type; send nothing.")] = False,
    rate: Annotated[float | None, typer.Option(help="Tasks per second (default: from the partner's in-flight limit).")] = None,
) -> None:
    """Re-deliver one partner's events from a point in the log (same delivery ids, marked replay)."""
    import asyncio
    import uuid

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bridge import replay as rp
    from bridge.kafka import AsyncProducer
    from bridge.registry import RegistryView

    settings = get_settings()
    offsets = None
    if from_offset:
        try:
            offsets = {int(p): int(o) for p, o in (item.split(":", 1) for item in from_offset)}
        except ValueError:
            raise typer.BadParameter("--from-offset is PARTITION:OFFSET, e.g. 0:1200") from None
    types = frozenset(int(t) for t in event_types.split(",")) if event_types else None
    request = rp.ReplayRequest(partner, _time(from_time, "--from-time"), offsets,
                               _time(to_time, "--to-time"), types, dry_run, rate)

    async def main() -> Any:
        view = RegistryView(settings)
        producer = AsyncProducer(settings)
        try:
            await asyncio.to_thread(view.start, 20.0)
            if view.partner(partner) is None:
                raise _fail(f"no partner {partner!r} (see `event-bridge partner list`)")
            the_plan = await asyncio.to_thread(rp.plan, settings, request)
            progress = rp.ReplayProgress(uuid.uuid4().hex[:12], partner, dry_run, the_plan.total)
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), "enqueued {task.fields[enqueued]}",
                          TimeRemainingColumn(), console=console) as bar:
                job = bar.add_task("counting" if dry_run else "replaying", total=the_plan.total,
                                   enqueued=0)
                work = asyncio.create_task(rp.run(settings, view, producer, request, progress, the_plan))
                while not work.done():
                    bar.update(job, completed=progress.scanned, enqueued=progress.enqueued)
                    await asyncio.sleep(0.3)
                bar.update(job, completed=progress.scanned, enqueued=progress.enqueued)
                return await work
        finally:
            view.stop()
            producer.close()

    try:
        result = asyncio.run(main())
    except BridgeError as exc:
        raise _fail(exc) from None
    table = Table("eventType", "deliveries" if not dry_run else "would send")
    for event_type, count in sorted(result.by_event_type.items()):
        table.add_row(str(event_type), str(count))
    console.print(table)
    verb = "would enqueue" if dry_run else "enqueued"
    console.print(f"scanned {result.scanned} events; {verb} {sum(result.by_event_type.values())} "
                  f"deliveries for {partner} ({result.state})")


@app.command()
def export(
    topic: Annotated[str, typer.Option(help="events, outcomes or lifecycle.")],
    from_time: Annotated[str, typer.Option(help="Start (ISO time).")],
    out: Annotated[str, typer.Option(help="Directory for the Avro files.")],
    to_time: Annotated[str | None, typer.Option(help="End (ISO time; default: now).")] = None,
) -> None:
    """Write Avro object container files, one per hour, readable by any Avro reader."""
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from bridge import exporter

    settings = get_settings()
    start = _time(from_time, "--from-time")
    assert start is not None
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        job = bar.add_task(f"exporting {topic}", total=None)
        try:
            files = exporter.export(settings, topic, start, _time(to_time, "--to-time"), Path(out),
                                    lambda done, total: bar.update(job, completed=done, total=total))
        except BridgeError as exc:
            raise _fail(exc) from None
    table = Table("file", "records")
    for path, count in files:
        table.add_row(str(path), str(count))
    console.print(table)


# --- processes -------------------------------------------------------------------------------


#: The stages a worker can run, in pipeline order (``event-bridge worker --stages``).
STAGES = ("routing", "analytics", "delivery")


def _log_level(name: str) -> int:
    level = logging.getLevelName({"warn": "WARNING"}.get(name.lower(), name.upper()))
    if not isinstance(level, int):
        raise _fail(f"-l/--loglevel: unknown level {name!r} (debug, info, warning, error)")
    return level


@app.command()
def worker(
    loglevel: Annotated[str | None, typer.Option("-l", "--loglevel", help="debug, info, warning "
                                                 "or error (default: BRIDGE_LOG_LEVEL).")] = None,
    stages: Annotated[str, typer.Option(help="Comma-separated stages to run, of "
                                        f"{','.join(STAGES)} (e.g. delivery alone, to scale it).")]
    = ",".join(STAGES),
) -> None:
    """Run a worker (routing + correlation, analytics feed, delivery); run more to scale out."""
    from bridge import analytics, routing
    from bridge.delivery import stage as delivery
    from bridge.kafka import check_connection
    from bridge.runtime import worker as runtime

    settings = get_settings()
    logging.basicConfig(level=_log_level(loglevel or settings.log_level),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    names = [name.strip() for name in stages.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STAGES))
    if unknown or not names:
        problem = f"unknown stage {', '.join(unknown)}" if unknown else "no stage named"
        raise _fail(f"--stages: {problem}; known: {', '.join(STAGES)}")
    factories = {"routing": routing.stage, "analytics": analytics.stage, "delivery": delivery.stage}
    try:
        settings.require_secrets()
        check_connection(settings)
        # Each stage checks what it relies on here, so a bad deployment fails before anything runs.
        chosen = [factories[name](settings) for name in STAGES if name in names]
    except BridgeError as exc:
        raise _fail(exc) from None
    code = runtime.run(settings, chosen)
    if code:
        raise typer.Exit(code)


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address (BRIDGE_HTTP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (BRIDGE_HTTP_PORT).")] = None,
) -> None:
    """Run the HTTP server: Artemis API, ingest, admin API, health, metrics."""
    import uvicorn

    from bridge.api import create_app as create_api

    from bridge.kafka import check_connection

    settings = _settings(http_host=host, http_port=port)
    try:
        settings.require_secrets()
        check_connection(settings)
    except BridgeError as exc:
        raise _fail(exc) from None
    from bridge.logfilters import install_access_log_filter

    config = uvicorn.Config(create_api(settings), host=settings.http_host, port=settings.http_port,
                            log_level=settings.log_level.lower(), proxy_headers=False,
                            access_log=settings.access_log)
    install_access_log_filter()  # after Config: it configures uvicorn's loggers
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.Server(config).run()


@app.command()
def simulate(
    rate: Annotated[float, typer.Option(help="Events per second (on average).")] = 20.0,
    duration: Annotated[float | None, typer.Option(help="Seconds to run (default: until Ctrl-C).")] = None,
    families: Annotated[str, typer.Option(help="Comma-separated: acs,parking,video,linkage.")] = "acs,parking,video,linkage",
    target: Annotated[str, typer.Option(help="http (POST to the ingest endpoint) or kafka.")] = "http",
    url: Annotated[str | None, typer.Option(help="Ingest URL (default: this host's api).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed, for repeatable traffic.")] = None,
) -> None:
    """Send realistic platform traffic built from the example pushes, with fresh ids and times."""
    import asyncio

    from rich.live import Live

    from bridge import simulate as sim

    settings = get_settings()
    try:
        simulator = sim.Simulator(rate, [f.strip() for f in families.split(",") if f.strip()], seed)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    stats = sim.SendStats()

    def table() -> Table:
        t = Table("pushes", "events", "failed", "last error", title=f"simulate → {target}")
        t.add_row(str(stats.pushes), str(stats.events), str(stats.failed), stats.last_error or "-")
        return t

    async def main() -> None:
        if target == "kafka":
            from bridge.ingest import Ingest
            from bridge.kafka import AsyncProducer

            producer = AsyncProducer(settings)
            ingest = Ingest(settings, producer)

            async def send(body: dict[str, Any]) -> None:
                import json

                await ingest.accept(json.dumps(body).encode())

            try:
                await sim.run(simulator, duration, send, stats)
            finally:
                producer.close()
        elif target == "http":
            import httpx

            dest = url or f"http://{settings.http_host}:{settings.http_port}{settings.ingest_path}"
            token = settings.ingest_token.get_secret_value() if settings.ingest_token else None
            async with httpx.AsyncClient(timeout=15) as client:
                await sim.run(simulator, duration, sim.http_sender(client, dest, token), stats)
        else:
            raise _fail(f"unknown target {target!r}: use http or kafka")

    async def with_display() -> None:
        with Live(table(), console=console, refresh_per_second=2) as live:
            job = asyncio.create_task(main())
            while not job.done():
                live.update(table())
                await asyncio.sleep(0.5)
            live.update(table())
            await job

    try:
        asyncio.run(with_display())
    except KeyboardInterrupt:
        pass
    raise typer.Exit(1 if stats.failed else 0)


@app.command("secret-key")
def secret_key() -> None:
    """Print a new random key for BRIDGE_SECRET_KEY."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="Add demo partners and simulated traffic.")] = False,
    port: Annotated[int | None, typer.Option(help="HTTP port (BRIDGE_HTTP_PORT).")] = None,
) -> None:
    """Everything on one machine: a local Kafka, the topics, api + worker, until Ctrl-C."""
    from bridge.devstack import DevStack

    stack = DevStack(_settings(http_port=port, mode="dev", access_log=not demo), console)
    try:
        stack.run(demo=demo)
    except BridgeError as exc:
        raise _fail(exc) from None


if __name__ == "__main__":  # pragma: no cover
    app()
