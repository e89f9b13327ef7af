"""Errors raised by the producer SDK.

Invalid events are not in this module: they raise
:class:`auditstream.events.validation.InvalidEvent`, the same error the HTTP
ingest and the processor use, so callers handle one type for "bad input".
The errors here are about *delivery*: the broker, the connection, the state of
the producer.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence


class ProducerError(Exception):
    """Base class of the SDK's delivery errors."""


class BrokerUnavailable(ProducerError):
    """The broker did not answer within the start-up deadline."""


class ProducerClosed(ProducerError):
    """The producer is not started, or was closed: nothing can be emitted."""


class DeliveryFailed(ProducerError):
    """Records that were enqueued by ``emit`` but that the broker did not acknowledge.

    ``emit`` returns as soon as a record is in the client's buffer (that is
    what makes it fast); a failure that happens later, after the client's own
    retries, is collected and raised by the next ``flush()`` (or ``close()``),
    so it is never silently lost.
    """

    def __init__(self, failures: Sequence[tuple[uuid.UUID, BaseException]]) -> None:
        self.failures: list[tuple[uuid.UUID, BaseException]] = list(failures)
        first_id, first_exc = self.failures[0]
        more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
        super().__init__(
            f"{len(self.failures)} event(s) not acknowledged by the broker; "
            f"first {first_id}: {type(first_exc).__name__}: {first_exc}{more}"
        )


class SpoolFull(ProducerError):
    """The broker is unreachable and the on-disk spool has no room left: the event was not taken.

    Raised by ``emit`` so the caller decides (wait, drop with a record of it, stop);
    the SDK never drops an event silently.
    """
