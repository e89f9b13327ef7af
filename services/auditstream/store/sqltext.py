"""Scanning SQL text: the one rule both the migration splitter and the cluster rewriter need.

Both walk statements character by character and must not mistake a ``;`` or a parenthesis
inside a quoted string or identifier for syntax.
"""

from __future__ import annotations

__all__ = ["QUOTES", "end_of_quoted"]

QUOTES = "'\"`"


def end_of_quoted(text: str, open_at: int) -> int:
    """Index of the quote that closes the one at ``open_at`` (backslash escapes skipped).

    Returns ``len(text)`` for an unterminated quote, so callers' loops end.
    """
    quote, i, n = text[open_at], open_at + 1, len(text)
    while i < n and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return min(i, n)
