"""Event-time windows of one (rule, group): pure state transitions, no I/O.

A group's state is a small JSON-able dict::

    {"e": [[t_ms, event_id, tag], ...],   # matching events, sorted by occurred_at
     "s": suppressed_until_ms | None,      # end of the window of the last alert
     "w": watermark_ms}                    # highest occurred_at seen in this group

``add`` puts one event in and says whether an alert fires. Windows are defined by event
time (``occurred_at``), never by arrival: a window is ``[start, start + W)`` whose start is
the time of one of its events. When an event arrives, every window that contains it and
starts at a stored event is checked, earliest first; the first that satisfies the rule fires,
and no later window may start before its end — so ten failed logins inside five minutes are
one alert, and the next alert needs a fresh window after the first one closed. Checking only
windows that contain the new event is enough: the predicates are monotone (more events never
un-satisfy a window), so a window without the new event was already checked when its own
last event arrived.

Lateness: an event older than the group's watermark minus ``lateness`` is not counted
(``Outcome.late``); entries that no accepted event can share a window with any more are
dropped, so the state stays bounded by what a window plus the lateness can hold.

Kinds: ``threshold`` counts entries, ``distinct`` counts distinct tags (the field value),
``sequence`` walks the entries greedily through the steps (tag = indices of the steps the
event matches) and needs a window starting at a first-step event.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ENTRIES", "Outcome", "WindowSpec", "add", "new_state"]

MAX_ENTRIES = 20_000  # per group: a runaway group cannot grow the state without bound
MAX_EVENT_IDS = 100  # ids recorded on one alert


@dataclass(frozen=True, slots=True)
class WindowSpec:
    kind: str  # threshold | distinct | sequence
    window_ms: int
    lateness_ms: int
    threshold: int = 1
    step_counts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    fired: bool = False
    late: bool = False
    window_start_ms: int = 0
    window_end_ms: int = 0
    event_ids: tuple[str, ...] = ()


_NOTHING = Outcome()
_LATE = Outcome(late=True)


def new_state() -> dict[str, Any]:
    return {"e": [], "s": None, "w": None}


def _satisfied(spec: WindowSpec, entries: list[list[Any]]) -> list[list[Any]] | None:
    """The entries that make the window fire, or None."""
    if spec.kind == "threshold":
        return entries if len(entries) >= spec.threshold else None
    if spec.kind == "distinct":
        seen: dict[Any, list[Any]] = {}
        for entry in entries:
            seen.setdefault(entry[2], entry)
        return list(seen.values()) if len(seen) >= spec.threshold else None
    # sequence: greedy, step by step, in event-time order
    step, have, used = 0, 0, []
    for entry in entries:
        if step in entry[2]:
            have += 1
            used.append(entry)
            if have == spec.step_counts[step]:
                step, have = step + 1, 0
                if step == len(spec.step_counts):
                    return used
    return None


def add(state: dict[str, Any], spec: WindowSpec, t_ms: int, event_id: str, tag: Any) -> Outcome:
    """Add one matching event to ``state`` (mutated in place) and say whether an alert fires."""
    watermark = state["w"]
    if watermark is not None and t_ms < watermark - spec.lateness_ms:
        return _LATE
    if watermark is None or t_ms > watermark:
        watermark = state["w"] = t_ms
    entries: list[list[Any]] = state["e"]
    suppressed = state["s"]
    # Drop what no accepted event can share a window with, and what an alert already used.
    horizon = watermark - spec.lateness_ms - spec.window_ms
    if suppressed is not None:
        horizon = max(horizon, suppressed - 1)
    if entries and entries[0][0] <= horizon:
        del entries[: bisect.bisect_right(entries, horizon, key=lambda e: e[0])]
    if suppressed is not None and t_ms < suppressed:
        return _NOTHING  # inside the window of the last alert: part of that alert
    position = bisect.bisect_right(entries, t_ms, key=lambda e: e[0])
    entries.insert(position, [t_ms, event_id, tag])
    if len(entries) > MAX_ENTRIES:
        del entries[: len(entries) - MAX_ENTRIES]
        position = min(position, len(entries) - 1)
    w = spec.window_ms
    # Candidate starts: stored events in (t - W, t], earliest first.
    first = bisect.bisect_right(entries, t_ms - w, key=lambda e: e[0])
    for i in range(first, len(entries)):
        start = entries[i][0]
        if start > t_ms:
            break
        if suppressed is not None and start < suppressed:
            continue
        if spec.kind == "sequence" and 0 not in entries[i][2]:
            continue
        end = bisect.bisect_left(entries, start + w, key=lambda e: e[0])
        used = _satisfied(spec, entries[i:end])
        if used is not None:
            state["s"] = start + w
            return Outcome(
                fired=True,
                window_start_ms=start,
                window_end_ms=start + w,
                event_ids=tuple(e[1] for e in used[:MAX_EVENT_IDS]),
            )
    return _NOTHING
