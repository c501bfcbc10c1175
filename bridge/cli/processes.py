"""``event-bridge worker``, ``api``, ``simulate``, ``dev``, ``secret-key``: the processes."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.table import Table

from bridge.cli.app import app, console, fail, overridden_settings
from bridge.errors import BridgeError
from bridge.settings import get_settings

#: The stages a worker can run, in pipeline order (``event-bridge worker --stages``).
STAGES = ("routing", "analytics", "delivery")


def _log_level(name: str) -> int:
    level = logging.getLevelName({"warn": "WARNING"}.get(name.lower(), name.upper()))
    if not isinstance(level, int):
        raise fail(f"-l/--loglevel: unknown level {name!r} (debug, info, warning, error)")
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
    from bridge.delivery import stage as delivery
    from bridge.feeds import analytics
    from bridge.kafka.config import check_connection
    from bridge.routing import stage as routing
    from bridge.runtime import worker as runtime

    settings = get_settings()
    logging.basicConfig(level=_log_level(loglevel or settings.log_level),
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    names = [name.strip() for name in stages.split(",") if name.strip()]
    unknown = sorted(set(names) - set(STAGES))
    if unknown or not names:
        problem = f"unknown stage {', '.join(unknown)}" if unknown else "no stage named"
        raise fail(f"--stages: {problem}; known: {', '.join(STAGES)}")
    factories = {"routing": routing.stage, "analytics": analytics.stage, "delivery": delivery.stage}
    try:
        settings.require_secrets()
        check_connection(settings)
        # Each stage checks what it relies on here, so a bad deployment fails before anything runs.
        chosen = [factories[name](settings) for name in STAGES if name in names]
    except BridgeError as exc:
        raise fail(exc) from None
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
    from bridge.kafka.config import check_connection

    settings = overridden_settings(http_host=host, http_port=port)
    try:
        settings.require_secrets()
        check_connection(settings)
    except BridgeError as exc:
        raise fail(exc) from None
    from bridge.logfilters import install_access_log_filter

    config = uvicorn.Config(create_api(settings), host=settings.http_host, port=settings.http_port,
                            log_level=settings.log_level.lower(), proxy_headers=False,
                            access_log=settings.access_log, http="httptools")
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

    from bridge.ops import simulate as sim

    settings = get_settings()
    try:
        simulator = sim.Simulator(rate, [f.strip() for f in families.split(",") if f.strip()], seed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    stats = sim.SendStats()

    def table() -> Table:
        t = Table("pushes", "events", "failed", "last error", title=f"simulate → {target}")
        t.add_row(str(stats.pushes), str(stats.events), str(stats.failed), stats.last_error or "-")
        return t

    async def main() -> None:
        if target == "kafka":
            from bridge.ingest import Ingest
            from bridge.kafka.producer import AsyncProducer

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
            raise fail(f"unknown target {target!r}: use http or kafka")

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
    from bridge.ops.devstack import DevStack

    stack = DevStack(overridden_settings(http_port=port, mode="dev", access_log=not demo), console)
    try:
        stack.run(demo=demo)
    except BridgeError as exc:
        raise fail(exc) from None
