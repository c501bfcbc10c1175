"""``event-bridge partner``: create, list, show, disable, rotate secrets."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail
from bridge.errors import BridgeError
from bridge.settings import get_settings

partner_app = typer.Typer(help="Partners: create, list, show, disable, rotate secrets.",
                          no_args_is_help=True)
app.add_typer(partner_app, name="partner")

def _with_partners(action: Any) -> Any:
    """Run ``action(service)`` against Kafka with a loaded registry (same code path as the API)."""
    import asyncio

    from bridge.kafka.producer import AsyncProducer
    from bridge.registry.partners import PartnerService
    from bridge.registry.view import RegistryView
    from bridge.registry.writer import RegistryWriter

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
        raise fail(exc) from None


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
        return await svc.create({"name": name, "userId": user_id,
                                 "eventTypes": _types_option(event_types)})

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
