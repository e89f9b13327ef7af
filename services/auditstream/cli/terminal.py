"""Printing data that came from elsewhere on an analyst's terminal, harmlessly.

Audit events are written by anyone who can reach the topic or the ingest route. An
actor name such as ``"\\x1b]0;pwned\\x07\\x1b[2J"`` printed as is would retitle the
window, clear the screen, or (CR, cursor moves) paint a forged line over a real one.
:func:`escape_controls` is the one place where such text is made inert before it is
printed: every C0 control (newline included: a table row stays one row), DEL, every
C1 control (``\\x9b`` is CSI on many terminals) and the bidirectional overrides that
reorder what is displayed (Trojan Source) become ``\\uXXXX``.

The notation is JSON's, so a line of JSON output stays valid JSON and decodes to the
same strings: orjson already escapes C0 inside strings, but writes DEL, C1 and the
bidi characters raw.
"""

from __future__ import annotations

import re

__all__ = ["escape_controls"]

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_controls(text: str) -> str:
    """``text`` with terminal control and display-reordering characters written as ``\\uXXXX``."""
    return _CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
