"""``auditstream run | processor | api``: start the services.

``run`` is the embedded default used by ``make run``: processor and API in one
process (chDB allows one engine per process), with an optional demo load.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from auditstream.config import Settings
from auditstream.logs import setup_logging


def _settings(host: str | None, port: int | None) -> Settings:
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    settings.prepare_data_dir()
    setup_logging(settings.log_level, settings.log_format)
    return settings


HostOpt = Annotated[
    str | None, typer.Option(help="API bind address (default AUDITSTREAM_API_HOST, 127.0.0.1).")
]
PortOpt = Annotated[int | None, typer.Option(help="API port (default AUDITSTREAM_API_PORT, 8000).")]


def run(
    host: HostOpt = None,
    port: PortOpt = None,
    demo: Annotated[int, typer.Option(help="Emit this many demo events once started (0: none).")] = 0,
    tenants: Annotated[str, typer.Option(help="Comma-separated demo tenants.")] = "acme,globex,initech",
) -> None:
    """Processor and query API in one process (the embedded default)."""
    from auditstream.demo.session import demo_on_started
    from auditstream.runtime import run_services

    settings = _settings(host, port)
    on_started = demo_on_started(demo, [t.strip() for t in tenants.split(",") if t.strip()])
    asyncio.run(run_services(settings, on_started=on_started))


def processor(
    host: HostOpt = None,
    port: PortOpt = None,
    followers: Annotated[
        bool,
        typer.Option(
            "--followers/--no-followers",
            help="Also run the feed followers (Merkle sealer, alert evaluator). They must run on"
            " exactly one instance per database: give --no-followers to every other processor, or"
            " run them alone with `auditstream followers`.",
        ),
    ] = True,
) -> None:
    """The stream processor alone, with /healthz, /readyz and /metrics on the port (chDB wants ``run``)."""
    from auditstream.runtime import run_services

    settings = _settings(host, port)
    asyncio.run(run_services(settings, api=False, followers=followers))


def followers(host: HostOpt = None, port: PortOpt = None) -> None:
    """The feed followers alone: Merkle sealer and alert evaluator (one instance per database)."""
    from auditstream.runtime import run_services

    settings = _settings(host, port)
    asyncio.run(run_services(settings, api=False, processor=False, followers=True))


def api(host: HostOpt = None, port: PortOpt = None) -> None:
    """The query API alone (use with a ClickHouse server; chDB wants ``run``)."""
    from auditstream.runtime import run_services

    settings = _settings(host, port)
    asyncio.run(run_services(settings, processor=False))
