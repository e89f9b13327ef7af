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

# Sub-commands (one module each under auditstream/cli/).
# register: emit
from auditstream.cli.keys import app as keys_app  # noqa: E402
app.add_typer(keys_app, name="keys")
from auditstream.cli import migrate  # noqa: E402

app.command("migrate")(migrate.migrate)
from auditstream.cli import run as _run  # noqa: E402

app.command("run")(_run.run)
app.command("processor")(_run.processor)
app.command("api")(_run.api)

if __name__ == "__main__":
    app()
