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
# register: keys
# register: migrate
# register: run
