"""The export pump: bounded hand-over between the store thread and the response."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from auditstream.api.routes.export import _END, _Pump


def test_pump_delivers_in_order_then_ends() -> None:
    pump = _Pump(lambda: iter([b"a", b"b", b"c"]))
    assert [pump.get() for _ in range(4)] == [b"a", b"b", b"c", _END]


def test_pump_hands_over_the_producer_error() -> None:
    def failing() -> Iterator[bytes]:
        yield b"first"
        raise RuntimeError("store broke")

    pump = _Pump(failing)
    assert pump.get() == b"first"
    err = pump.get()
    assert isinstance(err, RuntimeError) and str(err) == "store broke"


def test_pump_is_bounded_and_stops_when_the_consumer_leaves() -> None:
    produced = 0
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        nonlocal produced
        try:
            while True:
                produced += 1
                yield b"x"
        finally:
            closed.set()  # the store iterator is closed, releasing its query

    pump = _Pump(endless, maxsize=2)
    assert pump.get() == b"x"
    pump.stop()
    assert closed.wait(timeout=10), "the producer thread did not stop"
    pump._thread.join(timeout=10)
    assert not pump._thread.is_alive()
    # Bounded: at most the queue plus the item in hand beyond what was consumed.
    assert produced <= 1 + 2 + 1
