"""escape_controls: terminal controls from event data are printed inert (pure logic)."""

from __future__ import annotations

import orjson

from auditstream.cli.terminal import escape_controls

HOSTILE = "ok\x1b]0;pwned\x07\x1b[2J\rforged\x9b31m\x7f\u202eevil\nnext\ttab\x00"


def test_every_control_is_escaped_and_plain_text_is_not() -> None:
    out = escape_controls(HOSTILE)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in out)
    assert out.startswith("ok\\u001b]0;pwned\\u0007\\u001b[2J\\u000dforged\\u009b31m\\u007f\\u202eevil")
    assert "\\u000anext\\u0009tab\\u0000" in out
    assert escape_controls("Zoë 東京 — user.login ✓") == "Zoë 東京 — user.login ✓"


def test_json_lines_stay_valid_and_decode_to_the_same_data() -> None:
    event = {"actor": {"name": HOSTILE}, "details": {"k\x1b": "v\x85"}}
    line = escape_controls(orjson.dumps(event).decode())
    assert "\n" not in line and "\x1b" not in line and "\x85" not in line and "\u202e" not in line
    assert orjson.loads(line) == event
