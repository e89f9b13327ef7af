"""One test per contract rule: the error produced, and that it names the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from auditstream.events.model import Actor, ActorType, AuditEvent, Outcome
from auditstream.events.validation import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    parse_event,
    validate_event,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "occurred_at": "2026-03-10T10:13:21.123Z",
        "tenant_id": "acme",
        "action": "scan.created",
        "actor": {"id": "u-1"},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not ...}


def rejected(raw: bytes | str | None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, now=NOW)
    return info.value


def rejected_doc(**overrides: Any) -> InvalidEvent:
    return rejected(orjson.dumps(event(**overrides)))


def fields(exc: InvalidEvent) -> set[str]:
    return {e["field"] for e in exc.errors}


# --- the whole message ------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, b"", ""])
def test_tombstone_is_empty(raw: bytes | str | None) -> None:
    exc = rejected(raw)
    assert exc.errors == [{"field": "", "message": "empty message (tombstone)", "type": "empty"}]


def test_too_large_is_rejected_before_decoding() -> None:
    # Invalid UTF-8 and invalid JSON: only the size may be reported, since it is checked first.
    exc = rejected(b"\xff" * (MAX_EVENT_BYTES + 1))
    assert [e["type"] for e in exc.errors] == ["too_large"]
    assert str(MAX_EVENT_BYTES) in exc.reason


def test_exactly_max_bytes_is_not_too_large() -> None:
    doc = event(reason="r" * 10)
    raw = orjson.dumps(doc)
    padded = raw[:-1] + b" " * (MAX_EVENT_BYTES - len(raw)) + b"}"
    assert len(padded) == MAX_EVENT_BYTES
    assert parse_event(padded, now=NOW).tenant_id == "acme"


def test_invalid_utf8() -> None:
    raw = orjson.dumps(event(reason="caf\u00e9")).replace("é".encode(), b"\xe9")
    exc = rejected(raw)
    assert [e["type"] for e in exc.errors] == ["invalid_utf8"]


def test_str_with_lone_surrogate_is_invalid_utf8() -> None:
    assert rejected('{"reason": "\ud800"}').errors[0]["type"] == "invalid_utf8"


@pytest.mark.parametrize("raw", [b"{", b"{'a': 1}", b'{"a": NaN}', b"{} {}", b'\xef\xbb\xbf{"a": 1}'])
def test_invalid_json(raw: bytes) -> None:
    exc = rejected(raw)
    assert [(e["field"], e["type"]) for e in exc.errors] == [("", "invalid_json")]


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"null", b"true"])
def test_not_an_object(raw: bytes) -> None:
    assert [e["type"] for e in rejected(raw).errors] == ["not_object"]


@pytest.mark.parametrize("version", ["2", "1.0", 1])
def test_unsupported_schema_version_is_the_only_error(version: object) -> None:
    # Other problems of a v2 event are meaningless under v1: only the version is reported.
    exc = rejected_doc(schema_version=version, actor={"id": "x", "kind": "v2"})
    assert exc.errors == [
        {
            "field": "schema_version",
            "message": f"unsupported schema_version {version!r}, expected '1'",
            "type": "unsupported_schema_version",
        }
    ]


def test_schema_version_defaults_to_1() -> None:
    assert parse_event(orjson.dumps(event()), now=NOW).schema_version == "1"


def test_duplicate_top_level_key() -> None:
    raw = orjson.dumps(event())[:-1] + b',"tenant_id":"evil"}'
    exc = rejected(raw)
    assert exc.errors == [{"field": "tenant_id", "message": "duplicate key", "type": "duplicate_key"}]


def test_duplicate_nested_key_with_whitespace_before_colon() -> None:
    # Whitespace before the colon defeats the fast count; the exact path must still see it.
    raw = orjson.dumps(event(details={"a": "1"}))[:-2] + b', "a" : "2"}}'
    assert rejected(raw).errors[0]["field"] == "details.a"


def test_duplicate_key_in_a_list_item() -> None:
    raw = orjson.dumps(event(changes=[{"field": "x"}])).replace(
        b'{"field":"x"}', b'{"field":"x","field":"y"}'
    )
    assert [(e["field"], e["type"]) for e in rejected(raw).errors] == [("changes.0.field", "duplicate_key")]


def test_duplicate_key_reported_with_field_errors() -> None:
    raw = orjson.dumps(event(action="BAD"))[:-1] + b',"action":"BAD"}'
    exc = rejected(raw)
    assert {("action", "string_pattern_mismatch"), ("action", "duplicate_key")} <= {
        (e["field"], e["type"]) for e in exc.errors
    }


@pytest.mark.parametrize(
    "value",
    ['a":"b', ":leading colon", 'quote \\" then : colon', "spaced : colon", "tab\t:"],
)
def test_colons_and_quotes_inside_strings_are_not_duplicates(value: str) -> None:
    doc = event(reason=value, details={"k": value, ":k": "v"}, changes=[{"field": "f", "old": value}])
    assert parse_event(orjson.dumps(doc), now=NOW).reason == value


def test_pretty_printed_json_is_accepted() -> None:
    raw = orjson.dumps(event(details={"a": "b"}), option=orjson.OPT_INDENT_2)
    assert parse_event(raw, now=NOW).details == {"a": "b"}


# --- occurred_at ------------------------------------------------------------------------


def test_occurred_at_required() -> None:
    exc = rejected_doc(occurred_at=...)
    assert exc.errors[0] == {"field": "occurred_at", "message": "Field required", "type": "missing"}
    assert exc.reason == "occurred_at: Field required"


def test_occurred_at_naive_rejected() -> None:
    exc = rejected_doc(occurred_at="2026-03-10T10:13:21")
    assert [(e["field"], e["type"]) for e in exc.errors] == [("occurred_at", "datetime_naive")]
    assert "offset" in exc.reason


@pytest.mark.parametrize("value", ["yesterday", "2026-03-10", "2026-02-30T00:00:00Z", "10/03/2026 10:00Z"])
def test_occurred_at_unparseable_rejected(value: str) -> None:
    assert fields(rejected_doc(occurred_at=value)) == {"occurred_at"}


def test_occurred_at_unix_timestamp_not_coerced() -> None:
    assert fields(rejected_doc(occurred_at=1773137601)) == {"occurred_at"}


def test_occurred_at_normalised_to_utc_milliseconds() -> None:
    ev = parse_event(orjson.dumps(event(occurred_at="2026-03-10T11:13:21.123999+01:00")), now=NOW)
    assert ev.occurred_at == datetime(2026, 3, 10, 10, 13, 21, 123000, tzinfo=UTC)
    assert ev.occurred_at.tzinfo is UTC


def test_occurred_at_lowercase_t_and_z() -> None:
    ev = parse_event(orjson.dumps(event(occurred_at="2026-03-10t10:13:21z")), now=NOW)
    assert ev.occurred_at == datetime(2026, 3, 10, 10, 13, 21, tzinfo=UTC)


def test_occurred_at_up_to_five_minutes_ahead_accepted() -> None:
    ahead = (NOW + timedelta(minutes=5)).isoformat()
    assert parse_event(orjson.dumps(event(occurred_at=ahead)), now=NOW).occurred_at == NOW + timedelta(
        minutes=5
    )


def test_occurred_at_more_than_five_minutes_ahead_rejected() -> None:
    ahead = (NOW + timedelta(minutes=5, milliseconds=1)).isoformat()
    exc = rejected_doc(occurred_at=ahead, actor={})
    assert {
        "field": "occurred_at",
        "message": "more than 5 minutes in the future",
        "type": "datetime_future",
    } in (exc.errors)
    assert exc.reason == "occurred_at: more than 5 minutes in the future; actor.id: Field required"


def test_future_bound_uses_the_clock_by_default() -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    with pytest.raises(InvalidEvent, match="occurred_at: more than 5 minutes"):
        parse_event(orjson.dumps(event(occurred_at=ahead)))


# --- tenant_id, action -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "-acme", "a" * 65, "ac me", "acme\n", 42])
def test_tenant_id_rule(value: object) -> None:
    assert fields(rejected_doc(tenant_id=value)) == {"tenant_id"}


@pytest.mark.parametrize(
    "value", ["scan", "Scan.created", "scan..created", "scan.created.", "a." + "b" * 127, 7]
)
def test_action_rule(value: object) -> None:
    assert fields(rejected_doc(action=value)) == {"action"}


def test_action_at_128_chars_accepted() -> None:
    action = "a." + "b" * 126
    assert parse_event(orjson.dumps(event(action=action)), now=NOW).action == action


# --- actor ------------------------------------------------------------------------------


def test_actor_required() -> None:
    assert rejected_doc(actor=...).errors[0]["field"] == "actor"


def test_actor_id_required() -> None:
    exc = rejected_doc(actor={"type": "service"})
    assert exc.errors == [{"field": "actor.id", "message": "Field required", "type": "missing"}]
    assert exc.reason == "actor.id: Field required"


def test_actor_id_number_not_coerced() -> None:
    assert rejected_doc(actor={"id": 123}).errors[0] == {
        "field": "actor.id",
        "message": "Input should be a valid string",
        "type": "string_type",
    }


def test_actor_type_default_and_enum() -> None:
    assert parse_event(orjson.dumps(event()), now=NOW).actor.type is ActorType.user
    assert rejected_doc(actor={"id": "x", "type": "robot"}).errors[0]["field"] == "actor.type"


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "a b@c.de", "a@b@c.de"])
def test_actor_email_rule(email: str) -> None:
    assert fields(rejected_doc(actor={"id": "x", "email": email})) == {"actor.email"}


@pytest.mark.parametrize("ip", ["999.1.1.1", "1.2.3", "01.2.3.4", "fe80::1%eth0", "10.0.0.0/8", "localhost"])
def test_actor_ip_rule(ip: str) -> None:
    exc = rejected_doc(actor={"id": "x", "ip": ip})
    assert [(e["field"], e["type"]) for e in exc.errors] == [("actor.ip", "ip_address")]


def test_actor_ip_canonicalised() -> None:
    ev = parse_event(orjson.dumps(event(actor={"id": "x", "ip": "2001:0DB8:0:0::1"})), now=NOW)
    assert ev.actor.ip == "2001:db8::1"
    again = parse_event(orjson.dumps(event(actor={"id": "x", "ip": "2001:0DB8:0:0::1"})), now=NOW)
    assert again.actor.ip == "2001:db8::1"  # second time from the memo


def test_unknown_actor_field_rejected() -> None:
    exc = rejected_doc(actor={"id": "x", "role": "admin"})
    assert exc.errors == [{"field": "actor.role", "message": "unknown field", "type": "extra_forbidden"}]


# --- resource, outcome, reason, event_id, source ------------------------------------------


def test_resource_fields_bounded_and_closed() -> None:
    exc = rejected_doc(resource={"type": "", "id": "i" * 257, "owner": "x"})
    assert fields(exc) == {"resource.type", "resource.id", "resource.owner"}


def test_outcome_default_and_enum() -> None:
    assert parse_event(orjson.dumps(event()), now=NOW).outcome is Outcome.success
    assert rejected_doc(outcome="ok").errors[0]["field"] == "outcome"


def test_reason_bounded() -> None:
    assert rejected_doc(reason="r" * 1025).errors[0] == {
        "field": "reason",
        "message": "String should have at most 1024 characters",
        "type": "string_too_long",
    }


def test_event_id_uuid() -> None:
    given = uuid.uuid4()
    assert parse_event(orjson.dumps(event(event_id=str(given))), now=NOW).event_id == given
    for bad in ("not-a-uuid", given.hex, f"urn:uuid:{given}", 12):
        assert fields(rejected_doc(event_id=bad)) == {"event_id"}


def test_source_fields_bounded_and_closed() -> None:
    exc = rejected_doc(source={"service": "s" * 129, "pod": "p"})
    assert fields(exc) == {"source.service", "source.pod"}


# --- changes, details ------------------------------------------------------------------


def test_changes_values_are_json_scalars() -> None:
    ok = parse_event(
        orjson.dumps(event(changes=[{"field": "a", "old": 1, "new": "x"}, {"field": "b", "old": True}])),
        now=NOW,
    )
    assert [(c.old, c.new) for c in ok.changes or []] == [(1, "x"), (True, None)]
    exc = rejected_doc(changes=[{"field": "a", "old": [1]}, {"field": "b", "new": {"k": 1}}, {"old": 1}])
    assert [(e["field"], e["type"]) for e in exc.errors] == [
        ("changes.0.old", "json_scalar"),
        ("changes.1.new", "json_scalar"),
        ("changes.2.field", "missing"),
    ]


def test_changes_numbers_keep_their_type() -> None:
    ev = parse_event(orjson.dumps(event(changes=[{"field": "a", "old": 1, "new": 1.5}])), now=NOW)
    change = (ev.changes or [])[0]
    assert type(change.old) is int and type(change.new) is float


def test_changes_bounded() -> None:
    assert rejected_doc(changes=[{"field": "a"}] * 101).errors[0]["field"] == "changes"
    assert rejected_doc(changes=[{"field": "a", "new": "v" * 4097}]).errors[0]["field"] == "changes.0.new"


def test_details_flat_string_map() -> None:
    exc = rejected_doc(details={"n": 1, "nested": {"a": "b"}, "ok": "v"})
    assert fields(exc) == {"details.n", "details.nested"}


def test_details_at_most_64_keys() -> None:
    parse_event(orjson.dumps(event(details={f"k{i}": "v" for i in range(64)})), now=NOW)
    exc = rejected_doc(details={f"k{i}": "v" for i in range(65)})
    assert [(e["field"], e["type"]) for e in exc.errors] == [("details", "too_long")]


def test_details_key_and_value_bounded() -> None:
    assert rejected_doc(details={"k" * 129: "v"}).errors[0]["field"].startswith("details.")
    assert rejected_doc(details={"k": "v" * 4097}).errors[0]["field"] == "details.k"


def test_unknown_top_level_field() -> None:
    assert rejected_doc(severity="high").errors == [
        {"field": "severity", "message": "unknown field", "type": "extra_forbidden"}
    ]


def test_null_optional_fields_mean_absent() -> None:
    ev = parse_event(orjson.dumps(event(resource=None, reason=None, details=None, event_id=None)), now=NOW)
    assert ev.resource is None and ev.details is None and ev.event_id is None


def test_reason_lists_several_fields_on_one_line() -> None:
    exc = rejected_doc(tenant_id="", action="x", actor={}, outcome="?", reason=1, details={"a": 1})
    assert "\n" not in exc.reason
    assert exc.reason.startswith("tenant_id: ")
    assert exc.reason.endswith("(+1 more)")
    assert len(exc.errors) == 6


def test_invalid_event_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_event(b"[]")


# --- validate_event -------------------------------------------------------------------


def test_validate_event_accepts_python_values() -> None:
    ev = validate_event(
        {
            "occurred_at": datetime(2026, 3, 10, 11, 0, tzinfo=timezone(timedelta(hours=1))),
            "tenant_id": "acme",
            "action": "user.login",
            "actor": Actor(id="u"),
            "event_id": uuid.UUID(int=1),
            "outcome": Outcome.failure,
        },
        now=NOW,
    )
    assert ev.occurred_at == datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    assert ev.event_id == uuid.UUID(int=1)
    assert ev.outcome is Outcome.failure


def test_validate_event_rejects_naive_datetime() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event(occurred_at=datetime(2026, 3, 10, 10, 0)), now=NOW)
    assert info.value.errors[0]["field"] == "occurred_at"
    assert info.value.errors[0]["type"] == "datetime_naive"


def test_validate_event_does_not_coerce_numbers() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event(tenant_id=42), now=NOW)
    assert info.value.errors[0]["field"] == "tenant_id"


def test_validate_event_revalidates_a_model() -> None:
    stale = AuditEvent.model_construct(**AuditEvent.model_validate(event(), context={"now": NOW}).__dict__)
    stale.occurred_at = NOW + timedelta(hours=1)
    with pytest.raises(InvalidEvent, match="occurred_at: more than 5 minutes"):
        validate_event(stale, now=NOW)
    assert validate_event(parse_event(orjson.dumps(event()), now=NOW), now=NOW).tenant_id == "acme"


def test_validate_event_size_limit() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event(details={f"k{i}": "v" * 1100 for i in range(60)}), now=NOW)
    assert info.value.errors[0]["type"] == "too_large"


def test_validate_event_unserializable() -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_event(event(details={1: "non-string key"}), now=NOW)
    assert info.value.errors[0]["type"] == "not_serializable"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", "acme\n"),
        ("action", "scan.created\n"),
        ("occurred_at", "2026-03-10T10:13:21Z\n"),
        ("event_id", "0195f1e2-3c4d-7e5f-8a9b-0c1d2e3f4a5b\n"),
    ],
)
def test_trailing_newline_never_passes_an_anchored_pattern(field: str, value: str) -> None:
    # ECMA-262 semantics of "$" (end of input), not Python's (before a final newline).
    assert fields(rejected_doc(**{field: value})) == {field}
