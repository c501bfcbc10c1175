"""``event-bridge doctor``: the platform FAQ as a check list for one partner."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail
from bridge.errors import BridgeError
from bridge.settings import get_settings


@app.command()
def doctor(partner_id: str) -> None:
    """The platform FAQ as a check list for one partner: what would stop its events, and where."""
    import asyncio

    from bridge.ops import doctor as doc
    from bridge.registry.view import RegistryView

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
        raise fail(exc) from None
    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    table = Table("", "question", "answer", title=f"doctor {partner_id}", show_lines=True)
    for check in checks:
        table.add_row(marks[check.verdict], check.question, check.detail)
    console.print(table)
    raise typer.Exit(1 if any(c.verdict == "fail" for c in checks) else 0)
