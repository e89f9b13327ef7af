"""The ``auditstream`` console command: one typer sub-command per service and tool."""
