"""The query API (FastAPI). ``create_app`` lives in ``auditstream.api.app``.

Imported lazily: the CLI imports ``auditstream.api.keys`` (stdlib only) and should
not pay for FastAPI on every ``auditstream --help``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from auditstream.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from auditstream.api.app import create_app

        return create_app
    raise AttributeError(name)
