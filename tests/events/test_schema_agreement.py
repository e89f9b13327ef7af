"""The JSON Schema (source of truth) and the pydantic model must say the same thing.

Two checks: a structural comparison (property names, required sets, enums,
patterns and bounds at every level), and a corpus of documents that
``jsonschema`` and :func:`validate_event` must judge identically.

Left out of the corpus, because JSON Schema cannot express them or the Python
``jsonschema`` package evaluates them differently from the spec:

* "not more than 5 minutes in the future" (time-relative; a fixed ``now`` far
  ahead keeps every corpus date in the past) — tested in test_validation.py;
* non-finite numbers and integers beyond 64 bits (not JSON / not orjson);
* a trailing newline against a ``$``-anchored pattern: Python's ``re.search``
  lets ``$`` match before a final newline, ECMA-262 (and pydantic's Rust
  regex) does not; the model's stricter behaviour is tested separately.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from auditstream.events.model import AuditEvent
from auditstream.events.schema import load_json_schema
from auditstream.events.validation import InvalidEvent, validate_event

NOW = datetime(2030, 1, 1, tzinfo=UTC)
MISSING = object()

# --- structural comparison ----------------------------------------------------------------

_KEYWORDS = ("const", "pattern", "minLength", "maxLength", "maxItems", "maxProperties", "format")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/$defs/")
        node = {**root["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _normalise(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A canonical view of one subschema: nullability, types, formats, constraints, children."""
    node = _resolve(node, root)
    out: dict[str, Any] = {"nullable": False, "types": set(), "formats": set()}
    members = []
    for member in node.get("anyOf", []):
        member = _resolve(member, root)
        if member == {"type": "null"}:
            out["nullable"] = True
        elif set(member) == {"format"}:
            out["formats"].add(member["format"])
        else:
            members.append(member)
    assert len(members) <= 1, node
    if members:
        node = {**{k: v for k, v in node.items() if k != "anyOf"}, **members[0]}
        inner = _normalise(node, root)
        inner["nullable"] = inner["nullable"] or out["nullable"]
        inner["formats"] |= out["formats"]
        return inner
    types = node.get("type", [])
    for t in [types] if isinstance(types, str) else types:
        if t == "null":
            out["nullable"] = True
        else:
            out["types"].add(t)
    if "format" in node:
        out["formats"].add(node["format"])
    for key in _KEYWORDS:
        if key in node and key != "format":
            out[key] = node[key]
    if "enum" in node:
        out["enum"] = sorted(node["enum"])
    if "properties" in node:
        out["properties"] = {k: _normalise(v, root) for k, v in node["properties"].items()}
        out["required"] = set(node.get("required", []))
    if "additionalProperties" in node:
        extra = node["additionalProperties"]
        out["additionalProperties"] = extra if isinstance(extra, bool) else _normalise(extra, root)
    if "propertyNames" in node:
        out["propertyNames"] = _normalise({"type": "string", **node["propertyNames"]}, root)
    if "items" in node:
        out["items"] = _normalise(node["items"], root)
    return out


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                yield f"{path}.{key}: only in {'schema' if key in a else 'model'}"
            else:
                yield from _diff(a[key], b[key], f"{path}.{key}")
    elif a != b:
        yield f"{path}: schema {a!r} != model {b!r}"


def test_schema_file_is_valid_draft_2020_12() -> None:
    schema = load_json_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] and schema["title"]


def test_every_property_is_described() -> None:
    schema = load_json_schema()
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        for name, prop in obj["properties"].items():
            described = prop.get("description") or schema["$defs"].get(name, {}).get("description")
            assert described, name


def test_objects_forbid_unknown_properties() -> None:
    schema = load_json_schema()
    for obj in [schema, *schema["$defs"].values()]:
        assert obj["additionalProperties"] is False


def test_model_and_schema_agree_structurally() -> None:
    schema = load_json_schema()
    generated = AuditEvent.model_json_schema(mode="validation")
    differences = list(_diff(_normalise(schema, schema), _normalise(generated, generated)))
    assert differences == []


def test_structural_comparison_notices_a_difference() -> None:
    # Guard against a comparison that always passes.
    schema = load_json_schema()
    changed = copy.deepcopy(schema)
    changed["$defs"]["actor"]["properties"]["id"]["maxLength"] = 999
    changed["required"].remove("actor")
    generated = AuditEvent.model_json_schema(mode="validation")
    differences = list(_diff(_normalise(changed, changed), _normalise(generated, generated)))
    assert any(".actor" in d and "maxLength" in d for d in differences)
    assert any(".required" in d for d in differences)


# --- corpus -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "occurred_at": "2026-03-10T10:13:21.123Z",
    "tenant_id": "acme",
    "action": "scan.created",
    "actor": {
        "id": "u-1",
        "type": "user",
        "name": "Ada",
        "email": "ada@example.com",
        "ip": "192.0.2.1",
        "user_agent": "curl/8",
    },
    "resource": {"type": "scan", "id": "s-1", "name": "nightly"},
    "outcome": "success",
    "reason": "ok",
    "event_id": "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
    "source": {"service": "api", "host": "h1", "request_id": "r1"},
    "changes": [{"field": "retention", "old": 30, "new": 90}],
    "details": {"plan": "pro"},
    "schema_version": "1",
}

S = "x"
MUTATIONS: dict[str, list[Any]] = {
    "occurred_at": [
        "2026-03-10T10:13:21Z",
        "2026-03-10T10:13:21.1+05:30",
        "2026-03-10T10:13:21-08:00",
        "2026-03-10t10:13:21z",
        "2026-03-10T10:13:21.123456789Z",
        "1970-01-01T00:00:00Z",
        "2026-03-10T10:13:21",
        "2026-03-10",
        "2026-03-10 10:13:21Z",
        "2026-02-30T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2026-03-10T24:00:00Z",
        "2026-03-10T23:59:60Z",
        "2026-03-10T10:13:21+24:00",
        "2026-03-10T10:13:21+0100",
        "2026-03-10T10:13:21.1234567890Z",
        "2026-03-10T10:13:21.Z",
        1773137601,
        None,
        "",
        MISSING,
    ],
    "tenant_id": [
        "a",
        "A" * 64,
        "a.b-c_d",
        "0",
        "a" * 65,
        "-abc",
        "_a",
        "a b",
        "ünï",
        "",
        5,
        None,
        MISSING,
    ],
    "action": [
        "a.b",
        "user.login_failed",
        "a.b.c.d",
        "x." + "a" * 126,
        "x." + "a" * 127,
        "a",
        "A.b",
        "a..b",
        "a.b.",
        ".a.b",
        "a.b-c",
        "a.b c",
        1,
        None,
        "",
        MISSING,
    ],
    "actor": [
        {"id": "x"},
        {"id": "x" * 256},
        {"id": "x" * 257},
        {"id": ""},
        {"id": 5},
        {},
        {"type": "user"},
        {"id": "x", "type": "service"},
        {"id": "x", "type": "api_key"},
        {"id": "x", "type": "system"},
        {"id": "x", "type": "bot"},
        {"id": "x", "type": None},
        {"id": "x", "extra": 1},
        {"id": "x", "name": None},
        {"id": "x", "name": S * 257},
        {"id": "x", "user_agent": S * 1024},
        {"id": "x", "user_agent": S * 1025},
        "u-1",
        None,
        MISSING,
    ],
    "actor.email": [
        "a@b.co",
        "first.last+tag@sub.example.org",
        "a@b",
        "a b@c.d",
        "a@@b.c",
        "@b.c",
        "a@b.c ",
        "a@\u00e9.fr",
        "x" * 248 + "@b.com",
        "x" * 249 + "@b.com",
        5,
        None,
        "",
    ],
    "actor.ip": [
        "1.2.3.4",
        "255.255.255.255",
        "::1",
        "2001:db8::1",
        "2001:0DB8:0000:0000:0000:0000:0000:0001",
        "::ffff:192.0.2.1",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "fe80::1%eth0",
        "1.2.3.4/32",
        "1.2.3.4 ",
        "gggg::1",
        "",
        5,
        None,
    ],
    "resource": [
        {},
        {"type": "scan"},
        {"id": "1"},
        {"name": ""},
        {"type": ""},
        {"id": ""},
        {"type": "t" * 64},
        {"type": "t" * 65},
        {"id": "i" * 257},
        {"type": 1},
        {"x": 1},
        "scan",
        [],
        None,
        MISSING,
    ],
    "outcome": ["success", "failure", "unknown", "ok", "SUCCESS", "", None, 1, MISSING],
    "reason": ["", S * 1024, S * 1025, 5, None, MISSING],
    "event_id": [
        "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
        str(uuid.UUID(int=0)),
        str(uuid.uuid4()).upper(),
        uuid.uuid4().hex,
        f"urn:uuid:{uuid.uuid4()}",
        f"{{{uuid.uuid4()}}}",
        "not-a-uuid",
        "",
        5,
        None,
        MISSING,
    ],
    "source": [
        {},
        {"service": "s"},
        {"host": "h" * 255},
        {"host": "h" * 256},
        {"request_id": "r" * 129},
        {"service": 1},
        {"pod": "p"},
        "api",
        None,
        MISSING,
    ],
    "changes": [
        [],
        [{"field": "a"}],
        [{"field": "a", "old": "x", "new": 1}],
        [{"field": "a", "old": True, "new": None}],
        [{"field": "a", "old": 1.5, "new": -2e10}],
        [{"field": "a", "old": [1]}],
        [{"field": "a", "new": {"k": 1}}],
        [{"old": 1}],
        [{"field": ""}],
        [{"field": "f" * 257}],
        [{"field": "a", "x": 1}],
        [{"field": "a", "old": S * 4096}],
        [{"field": "a", "old": S * 4097}],
        [{"field": "a"}] * 100,
        [{"field": "a"}] * 101,
        ["a"],
        {},
        "x",
        None,
        MISSING,
    ],
    "details": [
        {},
        {"k": "v"},
        {"k": ""},
        {"k": 1},
        {"k": None},
        {"k": True},
        {"": "v"},
        {"k" * 128: "v"},
        {"k" * 129: "v"},
        {"k": "v" * 4096},
        {"k": "v" * 4097},
        {f"k{i}": "v" for i in range(64)},
        {f"k{i}": "v" for i in range(65)},
        {"k": {"a": "b"}},
        {"k": ["a"]},
        [],
        "k=v",
        None,
        MISSING,
    ],
    "schema_version": ["1", "2", "", 1, None, MISSING],
    "unknown_top_level_field": [1, None],
}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[part]
    if value is MISSING:
        target.pop(last, None)
    else:
        target[last] = value
    return doc


def _corpus() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "base", BASE
    minimal = {k: BASE[k] for k in ("occurred_at", "tenant_id", "action")} | {"actor": {"id": "u"}}
    yield "minimal", minimal
    for path, values in MUTATIONS.items():
        for i, value in enumerate(values):
            yield f"{path}[{i}]={str(value)[:40]!r}", _set(BASE, path, value)


CORPUS = list(_corpus())


def _format_checker() -> FormatChecker:
    """jsonschema's checker, plus date-time (its own needs the optional rfc3339-validator package).

    The pattern already fixes the shape; this adds calendar validity (no 30 February).
    """
    checker = FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(instance: object) -> bool:
        if isinstance(instance, str):
            datetime.fromisoformat(instance.upper())
        return True

    return checker


VALIDATOR = Draft202012Validator(load_json_schema(), format_checker=_format_checker())


def _model_accepts(doc: dict[str, Any]) -> bool:
    try:
        validate_event(doc, now=NOW)
    except InvalidEvent:
        return False
    return True


@pytest.mark.parametrize(("label", "doc"), CORPUS, ids=[label for label, _ in CORPUS])
def test_schema_and_model_judge_alike(label: str, doc: dict[str, Any]) -> None:
    schema_errors = [f"{'.'.join(map(str, e.path))}: {e.message[:80]}" for e in VALIDATOR.iter_errors(doc)]
    assert _model_accepts(doc) == (not schema_errors), schema_errors


def test_corpus_has_both_verdicts() -> None:
    verdicts = [VALIDATOR.is_valid(doc) for _, doc in CORPUS]
    assert sum(verdicts) >= 60
    assert len(verdicts) - sum(verdicts) >= 80
