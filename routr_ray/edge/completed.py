"""Answered non-INVITE server transactions on UDP, kept as bytes for the Completed state (RFC 3261 §17.2.2).

"While in the Completed state, the server transaction MUST pass the final response to the transport layer for
retransmission whenever a retransmission of the request is received", for Timer J (64*T1 on an unreliable
transport). That state needs the transaction key, the response's bytes and where they went, nothing else. The
EdgePort's machines therefore end when the final response is sent (``NonInviteServerTransaction(...,
tu_keeps_completed=True)``) and the EdgePort keeps a :class:`Completed` record here: at 1,000 REGISTER/s with
digest about 64,000 transactions are in Completed at any time, and a machine holding the parsed request and
response costs some 26 garbage-collected objects and 8 KiB each.

Every record lives for the same duration, so insertion order is expiry order: a FIFO of deadlines, trimmed on
every insert and lookup, replaces a timer per transaction. The store is bounded: when full, the oldest record
goes first (a retransmission of it would then be treated as a new request).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

__all__ = ["Completed", "CompletedTransactions"]


class Completed(NamedTuple):
    """What a retransmitted request gets back: ``data`` (the final response) sent again to ``hop``."""

    hop: Any  # edgeport.NextHop
    data: bytes
    status: int
    method: str
    deadline: float


class CompletedTransactions:
    """Records by transaction key until ``lifetime`` seconds after they were added."""

    def __init__(self, lifetime: float, clock: Callable[[], float], max_size: int = 250_000) -> None:
        if lifetime < 0 or max_size <= 0:
            raise ValueError("lifetime must be >= 0 and max_size > 0")
        self.lifetime = lifetime
        self.clock = clock
        self.max_size = max_size
        self._records: dict[Hashable, Completed] = {}
        self._expiry: deque[tuple[float, Hashable]] = deque()
        self.evicted = 0  # records dropped early because the store was full

    def add(self, key: Hashable, hop: Any, data: bytes, status: int, method: str) -> None:
        now = self.clock()
        self._expire(now)
        records = self._records
        expiry = self._expiry
        while key not in records and len(records) >= self.max_size and expiry:
            deadline, oldest = expiry.popleft()
            record = records.get(oldest)
            if record is not None and record.deadline == deadline:
                del records[oldest]
                self.evicted += 1
        deadline = now + self.lifetime
        records[key] = Completed(hop, data, status, method, deadline)
        expiry.append((deadline, key))

    def get(self, key: Hashable) -> Completed | None:
        record = self._records.get(key)
        if record is None:
            return None
        now = self.clock()
        if record.deadline <= now:
            self._expire(now)
            return None
        return record

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        records = self._records
        while expiry and expiry[0][0] <= now:
            deadline, key = expiry.popleft()
            record = records.get(key)
            if record is not None and record.deadline == deadline:  # not re-added since
                del records[key]

    def clear(self) -> None:
        self._records.clear()
        self._expiry.clear()

    def __len__(self) -> int:
        self._expire(self.clock())
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]
