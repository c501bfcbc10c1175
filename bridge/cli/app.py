"""The root ``event-bridge`` command and what every command group shares (console, errors)."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from bridge.errors import BridgeError
from bridge.settings import Settings, get_settings

app = typer.Typer(
    name="event-bridge",
    help="Kafka-backed, Artemis-compatible fan-out of security-platform events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

console = Console()
err = Console(stderr=True)


def fail(exc: BridgeError | str, code: int = 1) -> typer.Exit:
    """The exit of a command that failed for ``exc``, printed once on stderr."""
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(code)


def overridden_settings(**updates: Any) -> Settings:
    """The settings with the options the user gave (``None``: not given, the environment's value)."""
    return get_settings().model_copy(update={k: v for k, v in updates.items() if v is not None})
