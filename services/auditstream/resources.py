"""Files the package reads at run time: the event JSON Schema and the ClickHouse migrations.

They ship inside the distribution as ``auditstream.schemas`` (the repository's top-level
``schemas/`` folder, mapped into the package by pyproject.toml) and are read with
importlib.resources, so an installed wheel, the container image and a checkout behave
the same. ``AUDITSTREAM_SCHEMAS_DIR`` (``Settings.schemas_dir``) points every reader —
the store's migrations, event validation, ``auditstream migrate`` — at another folder.
"""

from __future__ import annotations

__all__ = ["EVENT_SCHEMA", "Resource", "packaged_schemas", "schemas_root"]

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from auditstream.config import Settings

# A folder or file either on disk (an override) or inside the installed package.
Resource = Path | Traversable

EVENT_SCHEMA = ("event", "v1.json")


def packaged_schemas() -> Traversable:
    """The ``schemas/`` folder that ships inside the package."""
    return files("auditstream.schemas")


def schemas_root(override: Resource | None = None) -> Resource:
    """``override``, else ``AUDITSTREAM_SCHEMAS_DIR`` when set, else the packaged folder."""
    if override is not None:
        return override
    configured = Settings().schemas_dir
    return configured if configured is not None else packaged_schemas()
