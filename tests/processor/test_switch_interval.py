"""The processor's thread switch interval: set while it runs, given back, bounded by the settings."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from auditstream.config import Settings
from auditstream.processor.switch_interval import set_switch_interval


def test_set_returns_the_previous_interval_and_can_put_it_back() -> None:
    original = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        previous = set_switch_interval(1.0)
        assert previous == pytest.approx(5.0)
        assert sys.getswitchinterval() == pytest.approx(0.001)
        assert set_switch_interval(previous) == pytest.approx(1.0)
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(original)


def test_the_default_is_cpythons_own() -> None:
    assert Settings().switch_interval_ms == 5.0


@pytest.mark.parametrize("value", ["0", "0.05", "101", "-1", "fast"])
def test_an_interval_out_of_bounds_is_refused_naming_the_setting(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDITSTREAM_SWITCH_INTERVAL_MS", value)
    with pytest.raises(ValidationError, match="switch_interval_ms"):
        Settings()
