"""The ``event-bridge`` command line (typer), one module per command group.

Thin: every command calls the same code the API uses. Importing a group module registers its
commands on :data:`app`, the console script's entry point.
"""

from bridge.cli import dlq, doctor, feeds, kafka, partners, processes  # noqa: F401  (registers commands)
from bridge.cli.app import app

__all__ = ["app"]
