"""The ingest-channel label: signing, verifying, and the installation's secret file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from auditstream.events.attribution import (
    KAFKA,
    Attribution,
    AttributionInvalid,
    Attributor,
    is_labelled,
    is_reserved_service,
    load_secret,
)


def test_round_trip_and_unlabelled_records() -> None:
    a = Attributor(b"k" * 32)
    headers = a.headers("http", b"value", key_id="key-1")
    assert is_labelled(headers)
    assert a.verify(headers, b"value") == Attribution("http", "key-1")
    assert a.verify(dict(headers), b"value") == Attribution("http", "key-1")
    assert a.verify(None, b"value") == KAFKA
    assert a.verify([("traceparent", b"00-abc")], b"value") == KAFKA
    assert not is_labelled([("traceparent", b"x")])
    with pytest.raises(ValueError, match="labelled"):
        a.headers("kafka", b"value")


def test_tampering_is_refused() -> None:
    a = Attributor(b"k" * 32)
    headers = list(a.headers("internal", b"value"))
    with pytest.raises(AttributionInvalid):
        a.verify(headers, b"other value")
    with pytest.raises(AttributionInvalid, match="twice"):
        a.verify([*headers, headers[0]], b"value")
    with pytest.raises(AttributionInvalid, match="unknown ingest channel"):
        a.verify([("auditstream.ingest.channel", b"kafka"), headers[2]], b"value")


def test_secret_file_is_created_once_owner_only(tmp_path: Path) -> None:
    first = load_secret(None, tmp_path / "data")
    assert load_secret(None, tmp_path / "data") == first
    mode = stat.S_IMODE((tmp_path / "data" / "ingest.secret").stat().st_mode)
    assert mode == 0o600
    assert load_secret("configured-secret-value", tmp_path / "data") == b"configured-secret-value"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["ingest.secret"]  # no temporary left


def test_reserved_services() -> None:
    assert is_reserved_service("auditstream-api") and is_reserved_service("AUDITSTREAM-cli")
    assert (
        not is_reserved_service("billing") and not is_reserved_service(None) and not is_reserved_service("")
    )
