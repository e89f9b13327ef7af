"""Event-time windows of one (rule, group): pure state transitions, no I/O.

A group's state is a small JSON-able dict::

    {"e": [[t_ms, event_id, tag], ...],   # matching events, sorted by occurred_at
     "s": suppressed_until_ms | None,      # end of the window of the last alert
     "w": watermark_ms,                    # highest occurred_at seen in this group
     "v": {value: t_ms}}                   # distinct only: the entry of each value

``add`` puts one event in and says whether an alert fires; in the usual case (the event is
its group's newest) that is one bisect and one count. Windows are defined by event
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

Kinds: ``threshold`` counts entries, ``distinct`` counts distinct tags (the field value;
one entry per value is kept, its latest occurrence),
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


def _sequence(spec: WindowSpec, entries: list[list[Any]]) -> list[list[Any]] | None:
    """Greedy walk through the steps in event-time order: the entries used, or None."""
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
    # distinct: one entry per value, its latest occurrence, so the number of entries in a window
    # is its number of distinct values; "v" maps value -> that entry's time. (Exact for events
    # in order; a late event's value is counted where its later occurrence is.)
    values: dict[str, int] | None = state.setdefault("v", {}) if spec.kind == "distinct" else None
    if entries and entries[0][0] <= horizon:
        cut = bisect.bisect_right(entries, horizon, key=_time)
        if values is not None:
            for entry in entries[:cut]:
                values.pop(entry[2], None)
        del entries[:cut]
    if suppressed is not None and t_ms < suppressed:
        return _NOTHING  # inside the window of the last alert: part of that alert
    if values is not None:
        seen = values.get(tag)
        if seen is not None:
            if seen >= t_ms:
                return _NOTHING
            j = bisect.bisect_left(entries, seen, key=_time)
            while entries[j][2] != tag:
                j += 1
            del entries[j]
        values[tag] = t_ms
    entries.insert(bisect.bisect_right(entries, t_ms, key=_time), [t_ms, event_id, tag])
    if len(entries) > MAX_ENTRIES:
        if values is not None:
            for entry in entries[: len(entries) - MAX_ENTRIES]:
                values.pop(entry[2], None)
        del entries[: len(entries) - MAX_ENTRIES]
    w = spec.window_ms
    # Candidate starts: stored events in (t - W, t], earliest first. When the new event is the
    # newest of its group (the usual case), the earliest candidate's window holds every event
    # of any later candidate's, so (the predicates being monotone) it alone decides.
    newest = t_ms >= watermark
    previous = None
    for i in range(bisect.bisect_right(entries, t_ms - w, key=_time), len(entries)):
        start = entries[i][0]
        if start > t_ms:
            break
        if start == previous or (suppressed is not None and start < suppressed):
            continue
        if spec.kind == "sequence" and 0 not in entries[i][2]:
            continue
        previous = start
        end = bisect.bisect_left(entries, start + w, key=_time)
        if spec.kind == "sequence":
            used = _sequence(spec, entries[i:end])
        else:
            used = entries[i:end] if end - i >= spec.threshold else None
        if used is not None:
            state["s"] = start + w
            return Outcome(
                fired=True,
                window_start_ms=start,
                window_end_ms=start + w,
                event_ids=tuple(e[1] for e in used[:MAX_EVENT_IDS]),
            )
        if newest:
            break
    return _NOTHING


def _time(entry: list[Any]) -> int:
    return entry[0]
