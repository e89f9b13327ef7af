"""Entry point of the ``auditstream`` command.

Each service or tool registers its own sub-command module here; the modules
stay small and import their heavy dependencies lazily so ``--help`` is quick.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="auditstream",
    help="Event-streaming audit log pipeline: Kafka -> processor -> ClickHouse -> query API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Sub-commands: one module each under auditstream/cli/.
from auditstream.cli import alerts, bench, client, demo, emit, keys, migrate, reconcile, run  # noqa: E402

app.command("run")(run.run)
app.command("processor")(run.processor)
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
app.add_typer(alerts.app, name="alerts")

if __name__ == "__main__":
    app()
