"""The fast paths (events/fastpath.py) accept only what pydantic accepts, with the same row.

Both of them: the msgspec one (``decode_fast``, then ``enrich``) and the native one
(``native_rows``, native/fastpath in Rust, which builds the row itself), each judged alone
against pydantic.

Over every corpus we have (hostile, malformed, the schema-agreement corpus, generated
valid events, and the subtle cases below), for each raw message:

* when a fast path accepts it, ``parse_event`` (pydantic) accepts it too and the fast
  path's row is the one ``enrich`` makes of pydantic's event: every column, types
  included, so the content hash too (what tells a retry from a conflict);
* ``process_batch`` (fast path, then pydantic for the rest) gives exactly the rows and
  the reject reasons it gives with the fast path switched off;
* for the schema-agreement corpus, the combined verdict is the JSON Schema's;
* the generated valid events do take the fast path (else it would be no fast path).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from auditstream.bench.messages import encode_messages
from auditstream.demo.generator import generate_events
from auditstream.demo.malformed import malformed_messages
from auditstream.events.fastpath import NATIVE, decode_fast, native_rows
from auditstream.events.stored import enrich, utc_ms
from auditstream.events.validation import InvalidEvent, parse_event
from auditstream.processor import batch as batch_module
from auditstream.processor.batch import KafkaMessage, process_batch
from tests.events.test_schema_agreement import CORPUS, VALIDATOR
from tests.events.test_schema_agreement import NOW as SCHEMA_NOW
from tests.faults.hostile import hostile_messages, tricky_valid_events

NOW = datetime.now(UTC)

# CI sets it: there the native module must have been built, not silently skipped.
_REQUIRE_NATIVE = os.environ.get("AUDITSTREAM_TEST_REQUIRE_NATIVE") == "1"


def _native_many(raws: list[Any], now: datetime) -> list[tuple[Any, ...] | None]:
    """The native rows of ``raws``, each at the position and time ``_row`` gives a row."""
    n = len(raws)
    rows, _ = native_rows(
        raws, ["t"] * n, [1] * n, [7] * n, received_at=utc_ms(NOW), now=now, retention_days=None
    )
    return rows


def _native_one(raw: object, now: datetime) -> tuple[Any, ...] | None:
    return _native_many([raw], now)[0]


def _msgspec_one(raw: object, now: datetime) -> tuple[Any, ...] | None:
    event = decode_fast(raw, now)
    return None if event is None else _row(event)


def _decoder(name: str) -> Any:
    """The fast path ``name`` as raw -> its row, or ``None`` where pydantic must decide."""
    if name == "msgspec":
        return _msgspec_one
    if not NATIVE:
        if _REQUIRE_NATIVE:
            pytest.fail("the native fast path is not built (AUDITSTREAM_TEST_REQUIRE_NATIVE=1)")
        pytest.skip("the native fast path is not built here (no Rust toolchain at install)")
    return _native_one


DECODERS = ["msgspec", "native"]

BASE: dict[str, Any] = {
    "occurred_at": "2026-03-10T10:13:21.123Z",
    "tenant_id": "acme",
    "action": "user.login",
    "actor": {
        "id": "u1",
        "type": "user",
        "name": "Ann",
        "email": "ann@acme.example",
        "ip": "10.0.0.1",
        "user_agent": "ua",
    },
    "resource": {"type": "user", "id": "u1", "name": "Ann"},
    "outcome": "success",
    "reason": "ok",
    "event_id": "0190d6d2-7b1e-7c3a-9a4e-1f2b3c4d5e6f",
    "source": {"service": "auth", "host": "h1", "request_id": "r1"},
    "changes": [{"field": "f", "old": "a", "new": "b"}],
    "details": {"k": "v"},
    "schema_version": "1",
}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(BASE))
    *parents, last = path.split(".")
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is _DROP:
        del target[last]
    else:
        target[last] = value
    return doc


_DROP = object()


def _subtle() -> Iterator[tuple[str, bytes]]:
    """Hand-made edge cases for the parts where two parsers could differ."""
    dump = orjson.dumps
    yield "base", dump(BASE)
    yield "base spaced", json.dumps(BASE, indent=2).encode()
    yield "leading/trailing whitespace", b" \n" + dump(BASE) + b"\r\n\t"
    yield "BOM", b"\xef\xbb\xbf" + dump(BASE)
    yield "trailing garbage", dump(BASE) + b"x"
    yield "two documents", dump(BASE) + dump(BASE)
    minimal = {"occurred_at": BASE["occurred_at"], "tenant_id": "t", "action": "a.b", "actor": {"id": "u"}}
    yield "minimal", dump(minimal)
    for key in list(BASE):
        if key not in minimal:
            yield f"null {key}", dump(_with(key, None))
            yield f"absent {key}", dump(_with(key, _DROP))
    for key in ("occurred_at", "tenant_id", "action", "actor"):
        yield f"null required {key}", dump(_with(key, None))
        yield f"absent required {key}", dump(_with(key, _DROP))
    for key in ("type", "name", "email", "ip", "user_agent"):
        yield f"null actor.{key}", dump(_with(f"actor.{key}", None))
        yield f"empty actor.{key}", dump(_with(f"actor.{key}", ""))
        yield f"number actor.{key}", dump(_with(f"actor.{key}", 1))
    for obj, keys in (("resource", ("type", "id", "name")), ("source", ("service", "host", "request_id"))):
        for key in keys:
            yield f"null {obj}.{key}", dump(_with(f"{obj}.{key}", None))
            yield f"empty {obj}.{key}", dump(_with(f"{obj}.{key}", ""))
        yield f"extra {obj}", dump(_with(f"{obj}.zz", "x"))
        yield f"empty object {obj}", dump(_with(obj, {}))
    yield "actor null", dump(_with("actor", None))
    yield "actor empty id", dump(_with("actor.id", ""))
    yield "extra top", dump(_with("zz", 1))
    yield "extra actor", dump(_with("actor.zz", 1))
    yield "extra change", dump(_with("changes.0.zz", 1))
    # Duplicate keys at each level, and strings that look like keys.
    raw = dump(BASE)
    yield "dup tenant", raw.replace(b'"tenant_id":"acme"', b'"tenant_id":"acme","tenant_id":"evil"')
    yield "dup actor.id", raw.replace(b'"id":"u1"', b'"id":"u1","id":"u2"', 1)
    yield "dup detail", raw.replace(b'"k":"v"', b'"k":"v","k":"w"')
    yield "dup change.old", raw.replace(b'"old":"a"', b'"old":"a","old":"z"')
    yield "dup resource", raw.replace(b'"resource":', b'"resource":null,"resource":')
    yield "colon strings", dump(_with("reason", '":":"x":'))
    yield "escaped quote colon", dump(_with("details", {'a\\":': '"\\":'}))
    yield "escaped quote dup", raw.replace(b'"k":"v"', b'"k":"v\\"","k":"w"')
    # Numbers and scalars in changes.
    for label, value in (
        ("int", 5),
        ("negative", -7),
        ("int64 max", 2**63 - 1),
        ("int64 min", -(2**63)),
        ("beyond int64", 2**63),
        ("uint64 max", 2**64 - 1),
        ("float", 1.5),
        ("bool", True),
        ("null", None),
        ("object", {"a": 1}),
        ("list", [1]),
        ("long string", "x" * 4096),
        ("too long string", "x" * 4097),
    ):
        yield f"change old {label}", json.dumps(_with("changes.0.old", value)).encode()
    for text in (
        "1e2",
        "1.0",
        "-0",
        "-0.0",
        "1E400",
        "NaN",
        "Infinity",
        "-Infinity",
        "123456789012345678901234567890",
    ):
        yield f"change literal {text}", raw.replace(b'"old":"a"', b'"old":' + text.encode())
    yield "change old absent", dump(_with("changes.0.old", _DROP))
    yield "change field missing", dump(_with("changes.0.field", _DROP))
    yield "changes 100", dump(_with("changes", [{"field": f"f{i}"} for i in range(100)]))
    yield "changes 101", dump(_with("changes", [{"field": f"f{i}"} for i in range(101)]))
    yield "changes empty", dump(_with("changes", []))
    yield "changes secret", dump(_with("changes", [{"field": "db_password", "old": "a", "new": "b"}]))
    yield "details 64", dump(_with("details", {f"k{i}": "v" for i in range(64)}))
    yield "details 65", dump(_with("details", {f"k{i}": "v" for i in range(65)}))
    yield "details empty", dump(_with("details", {}))
    yield "details empty key", dump(_with("details", {"": "v"}))
    yield "details key 128", dump(_with("details", {"k" * 128: "v"}))
    yield "details key 129", dump(_with("details", {"k" * 129: "v"}))
    yield "details value 4097", dump(_with("details", {"k": "v" * 4097}))
    yield "details number", dump(_with("details", {"k": 1}))
    yield "details nested", dump(_with("details", {"k": {"a": "b"}}))
    yield "details secret", dump(_with("details", {"api_key": "s", "other": "v"}))
    yield "details order", dump(_with("details", {"b": "1", "a": "2"}))
    # What the content hash is taken of, spelled as orjson spells it (native/fastpath/content.rs).
    controls = "".join(chr(i) for i in range(32)) + '"\\/\x7f\u2028é😀'
    yield (
        "control characters",
        dump(
            _with("details", {"k": controls, controls: "v"})
            | {"reason": controls, "changes": [{"field": "f", "old": controls}]}
        ),
    )
    yield (
        "details keys by code point",
        dump(_with("details", {"z": "1", "é": "2", "😀": "3", "\uffff": "4", "A": "5"})),
    )
    mixed = [
        {"field": "a", "old": 1, "new": True},
        {"field": "b", "new": None},
        {"field": "x_token", "old": -5},
    ]
    yield "changes mixed scalars", dump(_with("changes", mixed))
    # Strings: length in code points, multi-byte, escapes, control characters.
    for label, ch in (("ascii", "a"), ("2-byte", "é"), ("4-byte", "😀")):
        yield f"actor.id 256 {label}", dump(_with("actor.id", ch * 256))
        yield f"actor.id 257 {label}", dump(_with("actor.id", ch * 257))
    yield "escaped NUL", dump(_with("reason", "a\u0000b"))
    yield "raw NUL", raw.replace(b'"ok"', b'"o\x00k"')
    yield "raw tab in string", raw.replace(b'"ok"', b'"o\tk"')
    yield "escaped newline", dump(_with("reason", "a\nb"))
    yield "lone surrogate", raw.replace(b'"ok"', b'"\\ud800"')
    yield "surrogate pair escape", raw.replace(b'"ok"', b'"\\ud83d\\ude00"')
    yield "unicode escape", raw.replace(b'"ok"', b'"\\u00e9"')
    yield "invalid utf-8", raw.replace(b'"ok"', b'"\xff"')
    yield "overlong utf-8", raw.replace(b'"ok"', b'"\xc0\xaf"')
    yield "tenant trailing newline", dump(_with("tenant_id", "acme\n"))
    yield "action trailing newline", dump(_with("action", "user.login\n"))
    yield "email trailing newline", dump(_with("actor.email", "a@b.c\n"))
    yield "event_id trailing newline", dump(_with("event_id", BASE["event_id"] + "\n"))
    yield "tenant 64", dump(_with("tenant_id", "a" * 64))
    yield "tenant 65", dump(_with("tenant_id", "a" * 65))
    yield "action 129", dump(_with("action", "a." + "b" * 127))
    yield "action 128", dump(_with("action", "a." + "b" * 126))
    yield "reserved service", dump(_with("source.service", "auditstream-api"))
    # Timestamps.
    for text in (
        "2026-03-10T10:13:21Z",
        "2026-03-10t10:13:21z",
        "2026-03-10T10:13:21.123456789Z",
        "2026-03-10T10:13:21.1234+05:30",
        "2026-03-10T10:13:21-00:00",
        "2026-03-10T23:59:59-23:59",
        "2026-02-30T10:13:21Z",
        "2026-03-10T10:13:60Z",
        "2026-03-10T10:13:21",
        "2026-03-10 10:13:21Z",
        "2026-03-10",
        "1969-12-31T23:59:59Z",
        "9999-12-31T23:59:59Z",
        "2026-03-10T10:13:21.Z",
    ):
        yield f"occurred_at {text}", dump(_with("occurred_at", text))
    yield "occurred_at number", dump(_with("occurred_at", 1700000000))
    future = (NOW + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    far = (NOW + timedelta(minutes=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    yield "occurred_at 4 min ahead", dump(_with("occurred_at", future))
    yield "occurred_at 6 min ahead", dump(_with("occurred_at", far))
    # Identifiers and addresses.
    for text in (
        BASE["event_id"].upper(),
        "0190d6d27b1e7c3a9a4e1f2b3c4d5e6f",
        "urn:uuid:" + BASE["event_id"],
        "{" + BASE["event_id"] + "}",
        "00000000-0000-0000-0000-000000000000",
        "",
    ):
        yield f"event_id {text!r}", dump(_with("event_id", text))
    for text in (
        "010.0.0.1",
        "255.255.255.255",
        "256.0.0.1",
        "2001:0DB8:0:0::1",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "::",
        "1.2.3",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    ):
        yield f"ip {text}", dump(_with("actor.ip", text))
    for value in ("user", "service", "api_key", "system", "robot", "USER"):
        yield f"actor.type {value}", dump(_with("actor.type", value))
    for value in ("success", "failure", "unknown", "maybe"):
        yield f"outcome {value}", dump(_with("outcome", value))
    for value in ("1", "2", 1, ""):
        yield f"schema_version {value!r}", dump(_with("schema_version", value))
    yield "not an object", b"[1,2]"
    yield "string", b'"x"'
    yield "deep", b'{"details":' + b'{"a":' * 2000 + b"1" + b"}" * 2000 + b"}"


def _corpora() -> Iterator[tuple[str, bytes | None]]:
    yield from ((f"subtle: {label}", raw) for label, raw in _subtle())
    yield from ((f"hostile: {name}", raw) for name, raw in hostile_messages())
    for i, event in enumerate(tricky_valid_events(seed=3)):
        yield f"tricky valid {i}", orjson.dumps(event)
    for i, (raw, field) in enumerate(malformed_messages(300, seed=11)):
        yield f"malformed {i} ({field})", raw
    for label, doc in CORPUS:
        yield f"schema corpus: {label}", _dump_any(doc)
    for i, event in enumerate(generate_events(500, tenants=("acme", "globex"), seed=21)):
        yield f"generated {i}", orjson.dumps(event)


def _dump_any(doc: dict[str, Any]) -> bytes:
    """JSON for any corpus document (Python's json also writes big ints and NaN literals)."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


CORPORA = list(_corpora())


def _pydantic(raw: bytes | None, now: datetime) -> tuple[str, Any]:
    try:
        return "ok", parse_event(raw, now=now)
    except InvalidEvent as exc:
        return "rejected", exc.reason


def _row(event: Any) -> tuple[Any, ...]:
    return enrich(event, topic="t", partition=1, offset=7, received_at=NOW, channel="kafka")


def _same_row(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a == b and [type(x) for x in a] == [type(x) for x in b]


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("now", [NOW, SCHEMA_NOW], ids=["now", "schema-now"])
def test_fast_path_accepts_only_what_pydantic_accepts_with_the_same_row(name: str, now: datetime) -> None:
    decode = _decoder(name)
    accepted = 0
    for label, raw in CORPORA:
        fast = decode(raw, now)
        if fast is None:
            continue
        accepted += 1
        verdict, event = _pydantic(raw, now)
        assert verdict == "ok", f"{label}: fast path accepted what pydantic rejects: {event}"
        assert _same_row(fast, _row(event)), label
    assert accepted >= 500


@pytest.mark.parametrize("name", DECODERS)
def test_combined_path_gives_the_same_rows_and_reasons(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _decoder(name)
    messages = [
        KafkaMessage(topic="t", partition=i % 3, offset=i, key=None, value=raw)
        for i, (_, raw) in enumerate(CORPORA)
    ]
    with_fast = process_batch(messages, received_at=NOW, now=NOW, retention_days=400, native=name == "native")
    monkeypatch.setattr(batch_module, "decode_many", lambda values, now: [None] * len(values))
    without = process_batch(messages, received_at=NOW, now=NOW, retention_days=400, native=False)
    assert len(with_fast.rows) == len(without.rows) > 500
    for a, b in zip(with_fast.rows, without.rows, strict=True):
        assert a.message is b.message
        assert _same_row(a.values, b.values), a.message.offset
    assert [(r.message.offset, r.reason, r.errors) for r in with_fast.rejected] == [
        (r.message.offset, r.reason, r.errors) for r in without.rejected
    ]
    assert len(with_fast.rejected) > 300


@pytest.mark.parametrize("name", DECODERS)
def test_an_event_older_than_the_retention_gets_pydantics_reason(name: str) -> None:
    _decoder(name)
    old = orjson.dumps(_with("occurred_at", (NOW - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")))
    recent = orjson.dumps(_with("occurred_at", (NOW - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M:%SZ")))
    messages = [
        KafkaMessage(topic="t", partition=0, offset=i, key=None, value=v) for i, v in enumerate([old, recent])
    ]
    batch = process_batch(messages, received_at=NOW, now=NOW, retention_days=30, native=name == "native")
    assert [r.message.offset for r in batch.rows] == [1]
    assert [(r.message.offset, r.reason) for r in batch.rejected] == [
        (0, "occurred_at: older than the retention of 30 days")
    ]


@pytest.mark.parametrize("name", DECODERS)
def test_combined_verdict_is_the_json_schemas(name: str) -> None:
    decode = _decoder(name)
    for label, doc in CORPUS:
        raw = _dump_any(doc)
        fast = decode(raw, SCHEMA_NOW)
        verdict = fast is not None or _pydantic(raw, SCHEMA_NOW)[0] == "ok"
        assert verdict == VALIDATOR.is_valid(doc), label


@pytest.mark.parametrize("name", DECODERS)
def test_generated_valid_events_take_the_fast_path(name: str) -> None:
    decode = _decoder(name)
    # The processor's benchmark events and the demo generator's, every kind of event it makes.
    raws = [raw for _, raw in encode_messages(2000, seed=9)]
    raws += [orjson.dumps(e) for e in generate_events(2000, tenants=("a", "b", "c"), seed=4)]
    # Their times end at the moment they are made, later than the module's NOW (taken when
    # the suite was collected, minutes earlier in a full run): judge them against now.
    now = datetime.now(UTC)
    assert all(decode(raw, now) is not None for raw in raws)


@pytest.mark.parametrize("name", DECODERS)
def test_fast_path_keeps_the_duplicate_key_rule(name: str) -> None:
    raw = orjson.dumps(BASE).replace(b'"tenant_id":"acme"', b'"tenant_id":"acme","tenant_id":"evil"')
    assert _decoder(name)(raw, NOW) is None
    with pytest.raises(InvalidEvent, match="tenant_id: duplicate key"):
        parse_event(raw, now=NOW)


@pytest.mark.parametrize("name", DECODERS)
def test_random_mutations_of_valid_events_agree(name: str) -> None:
    """Byte-level mutations of generated events (a fuzz with a fixed seed, bounded in size)."""
    decode = _decoder(name)
    rng = random.Random(12)
    raws = [orjson.dumps(e) for e in generate_events(300, tenants=("acme",), seed=5)]
    alphabet = b'{}[]":,0129aZ\\\x00\x7f\xc3\xa9 -.eE'
    for raw in raws:
        for _ in range(10):
            data = bytearray(raw)
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(data))
                op = rng.random()
                if op < 0.4:
                    data[pos] = rng.choice(alphabet)
                elif op < 0.7:
                    del data[pos]
                else:
                    data.insert(pos, rng.choice(alphabet))
            mutated = bytes(data)
            fast = decode(mutated, NOW)
            if fast is not None:
                verdict, event = _pydantic(mutated, NOW)
                assert verdict == "ok", (mutated, event)
                assert _same_row(fast, _row(event)), mutated


def test_native_batch_is_its_elements_one_by_one() -> None:
    """One call over the whole corpus (non-bytes values included) decides each value as alone."""
    _decoder("native")
    raws: list[Any] = [raw for _, raw in CORPORA] + [None, "text", bytearray(b"{}"), b"", b"x" * 70_000]
    together = _native_many(raws, NOW)
    assert len(together) == len(raws)
    for raw, fast in zip(raws, together, strict=True):
        alone = _native_one(raw, NOW)
        assert (fast is None) == (alone is None), raw
        if fast is not None and alone is not None:
            assert _same_row(fast, alone)
    assert together[-5:] == [None] * 5


def test_native_and_msgspec_accept_the_same_generated_events() -> None:
    """Where both are sure, they build the same row; neither may be lazier on valid events."""
    _decoder("native")
    raws = [orjson.dumps(e) for e in generate_events(1000, tenants=("acme",), seed=8)]
    now = datetime.now(UTC)
    for raw, native in zip(raws, _native_many(raws, now), strict=True):
        fast = _msgspec_one(raw, now)
        assert native is not None and fast is not None
        assert _same_row(native, fast)
