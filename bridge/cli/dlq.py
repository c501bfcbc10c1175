"""``event-bridge dlq``: dead letters: list, show, redrive."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail
from bridge.errors import BridgeError
from bridge.settings import get_settings

dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

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

    from bridge.delivery import readback

    try:
        letters = readback.dead_letters(get_settings(), partner, _since(since), state=state)
    except BridgeError as exc:
        raise fail(exc) from None
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

    from bridge.delivery import readback

    try:
        letters = [d for d in readback.dead_letters(get_settings()) if d["id"] == letter_id]
    except BridgeError as exc:
        raise fail(exc) from None
    if not letters:
        raise fail(f"no dead letter {letter_id!r}")
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

    from bridge.delivery import readback
    from bridge.kafka.producer import AsyncProducer
    from bridge.ops import redrive
    from bridge.registry.view import RegistryView

    settings = get_settings()
    try:
        letters = readback.dead_letters(settings, partner, _since(since),
                                        state=None if include_redriven else "dead")
    except BridgeError as exc:
        raise fail(exc) from None
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
        raise fail(exc) from None
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
