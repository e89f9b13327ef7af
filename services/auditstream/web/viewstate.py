"""The viewer's state, which lives in the URL: filters, tenant, and links that change them.

Filters are validated by the API's own code: the ``ExportFilters`` model (derived from
``deps.query_filters``, so it carries the same limits) and then ``query_filters``
itself. The viewer never has a filter rule of its own; an invalid value becomes a
message naming the field instead of a JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.datastructures import QueryParams

from auditstream.api.deps import QueryFilters, query_filters
from auditstream.api.errors import ApiError
from auditstream.api.routes.exports import ExportFilters

__all__ = ["FILTER_NAMES", "PRESETS", "Chip", "ViewState", "parse_view"]

# The filter parameters of /v1/events, in the order chips are shown.
FILTER_NAMES = ("since", "until", "actor", "action", "outcome", "resource_type", "resource_id", "ip", "q")
_LISTS = ("actor", "action")
PRESETS = (("-24h", "Last 24 hours"), ("-7d", "Last 7 days"), ("-30d", "Last 30 days"))
_LABELS = {
    "since": "From",
    "until": "Until",
    "actor": "User",
    "action": "Action",
    "outcome": "Outcome",
    "resource_type": "Resource type",
    "resource_id": "Resource id",
    "ip": "IP",
    "q": "Text",
}


@dataclass(frozen=True, slots=True)
class Chip:
    label: str
    value: str
    remove_url: str


@dataclass(slots=True)
class ViewState:
    """What the URL says: the raw filter values, the tenant asked for, and the validation result."""

    raw: dict[str, Any]
    tenant: str | None
    filters: QueryFilters | None = None
    error: str | None = None
    error_field: str | None = None
    chips: list[Chip] = field(default_factory=list)

    def params(self, **changes: Any) -> list[tuple[str, str]]:
        """Query pairs of this view with ``changes`` applied (None removes a parameter)."""
        values = {**self.raw, **changes}
        pairs: list[tuple[str, str]] = []
        for name in FILTER_NAMES:
            value = values.get(name)
            if value is None or value == [] or value == "":
                continue
            if isinstance(value, list):
                pairs.extend((name, v) for v in value)
            else:
                pairs.append((name, str(value)))
        if self.tenant:
            pairs.append(("tenant", self.tenant))
        return pairs

    def query(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    def url(self, path: str = "/", **changes: Any) -> str:
        q = self.query(**changes)
        return f"{path}?{q}" if q else path

    @property
    def preset(self) -> str | None:
        since = self.raw.get("since")
        if not self.raw.get("until") and since in {p for p, _ in PRESETS}:
            return since
        return "-7d" if not since and not self.raw.get("until") else None


def _raw_from(query: QueryParams) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name in FILTER_NAMES:
        if name in _LISTS:
            values = [v.strip() for v in query.getlist(name) if v.strip()]
            if values:
                raw[name] = values
        else:
            value = (query.get(name) or "").strip()
            if value:
                raw[name] = value
    return raw


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err.get("loc") else "filters"
    return name, f"{name}: {err['msg']}"


async def parse_view(query: QueryParams) -> ViewState:
    """The view of a request's query string; ``error`` names the first invalid field."""
    tenant = (query.get("tenant") or "").strip() or None
    state = ViewState(raw=_raw_from(query), tenant=tenant)
    for name in FILTER_NAMES:
        values = state.raw.get(name)
        if values is None:
            continue
        for value in values if isinstance(values, list) else [values]:
            rest = [v for v in values if v != value] if isinstance(values, list) and len(values) > 1 else None
            state.chips.append(Chip(_LABELS[name], value, state.url("/", **{name: rest})))
    try:
        model = ExportFilters.model_validate(state.raw)
    except ValidationError as exc:
        state.error_field, state.error = _first_error(exc)
        return state
    try:
        state.filters = await query_filters(**model.model_dump(exclude_none=True))
    except ApiError as exc:
        state.error_field, state.error = exc.field, exc.message
    return state
