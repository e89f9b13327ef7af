"""Entry point of the ``auditstream`` command.

Each service or tool registers its own sub-command module here; the modules
stay small and import their heavy dependencies lazily so ``--help`` is quick.
"""

from __future__ import annotations

from typing import Annotated

import typer

from auditstream import __version__

app = typer.Typer(
    name="auditstream",
    help="Event-streaming audit log pipeline: Kafka -> processor -> ClickHouse -> query API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"auditstream {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Event-streaming audit log pipeline: Kafka -> processor -> ClickHouse -> query API."""


# Sub-commands: one module each under auditstream/cli/.
from auditstream.cli import (  # noqa: E402
    alerts,
    bench,
    client,
    demo,
    dlq,
    emit,
    integrity,
    keys,
    migrate,
    reconcile,
    run,
)

app.command("run")(run.run)
app.command("processor")(run.processor)
app.command("followers")(run.followers)
app.command("api")(run.api)
app.command("migrate")(migrate.migrate)
app.command("emit")(emit.emit)
app.command("demo")(demo.demo)
app.command("reconcile")(reconcile.reconcile)
app.command("query")(client.query)
app.command("export")(client.export)
app.command("tail")(client.tail)
app.command("bench")(bench.bench)
app.add_typer(keys.app, name="keys")
app.add_typer(dlq.app, name="dlq")
app.add_typer(integrity.app, name="checkpoint")
app.command("verify")(integrity.verify)
app.add_typer(alerts.app, name="alerts")

if __name__ == "__main__":
    app()
