"""Access to the v1 event JSON Schema, the source of truth of the event contract.

The schema lives in ``schemas/event/v1.json`` (beside ``services/``) so that
producers in other languages can use it as is; it ships inside the package and is
read through :mod:`auditstream.resources` (``AUDITSTREAM_SCHEMAS_DIR`` overrides it).
Python code validates with the pydantic model in :mod:`auditstream.events.model`,
which a test keeps in step with this file. Loading is cached: the file is read once per process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from auditstream.resources import EVENT_SCHEMA, Resource, schemas_root


def schema_path() -> Resource:
    """Where the v1 schema is read from (``<schemas>/event/v1.json``, see ``auditstream.resources``)."""
    return schemas_root().joinpath(*EVENT_SCHEMA)


@lru_cache(maxsize=1)
def _load(path: Resource) -> bytes:
    return path.read_bytes()


def load_json_schema() -> dict[str, Any]:
    """Return the v1 event JSON Schema (draft 2020-12) as a fresh dict.

    A new dict on every call so that a caller mutating it cannot corrupt what
    the next caller sees; the file itself is read only once per path.
    """
    schema: dict[str, Any] = orjson.loads(_load(schema_path()))
    return schema
