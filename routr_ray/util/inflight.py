"""InFlightMeter: how many messages a replica is working on, averaged over time (issue 18 item 1).

A processor replica serves batches over the link and over Ray calls; Serve counts only the second kind. The replica
counts every message of both (``begin(n)`` when a batch arrives, ``end(n)`` when it is answered) and reports the
time-weighted mean since its previous report to Serve's autoscaler (``record_autoscaling_stats``): a busy replica
with 3 messages in flight for half a second and none for the other half reports 1.5. Messages rather than batches,
because the senders batch adaptively: under load a batch grows while the number of batches in flight stays bounded
(``Batching.max_in_flight``), so only the messages tell how loaded a replica is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["InFlightMeter"]


class InFlightMeter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.in_flight = 0
        self._area = 0.0  # message-seconds since the last report
        self._since = self._last = clock()

    def _advance(self) -> float:
        now = self._clock()
        self._area += self.in_flight * (now - self._last)
        self._last = now
        return now

    def begin(self, messages: int) -> None:
        self._advance()
        self.in_flight += messages

    def end(self, messages: int) -> None:
        self._advance()
        self.in_flight = max(0, self.in_flight - messages)

    def average(self) -> float:
        """The time-weighted mean of messages in flight since the previous call (or since the start), and start a
        new period. With no time elapsed, the current count."""
        now = self._advance()
        elapsed = now - self._since
        mean = self._area / elapsed if elapsed > 0 else float(self.in_flight)
        self._area = 0.0
        self._since = now
        return mean
