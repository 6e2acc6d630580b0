"""Calls in progress and their durations, as one EdgePort sees them (issue 21, metrics).

A call is *up* from the 2xx the EdgePort sends upstream for an initial INVITE (no To tag) until the final response
it sends for a BYE of the same Call-ID (RFC 3261 §15); its duration is observed then. A call whose BYE never comes
(a phone that vanished) is forgotten after ``max_age`` seconds, and at most ``max_calls`` are remembered (the
oldest forgotten first), so a flood cannot grow the table. Final responses to initial INVITEs are counted by
result: ``answered`` (2xx), ``cancelled`` (487), ``failed`` (any other >= 300 but 401/407: a challenge is
answered again with credentials in the same call).

Only the EdgePort where the INVITE entered counts it; a call that crosses two EdgePorts (a callee registered
through another) is counted by both: sum by ``edgeport`` with that in mind.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from routr_ray.sip import ParseError, Request

__all__ = ["CALL_DURATION_BUCKETS", "CallTracker"]

RESULTS = ("answered", "cancelled", "failed")
CALL_DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
DEFAULT_MAX_AGE = 12 * 3600.0


class CallTracker:
    def __init__(self, observe: Callable[[float], None], *, max_calls: int = 100_000,
                 max_age: float = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.monotonic) -> None:
        self._observe = observe
        self._up: OrderedDict[str, float] = OrderedDict()  # Call-ID -> when it was answered
        self.max_calls = max_calls
        self.max_age = max_age
        self.clock = clock
        self.results: dict[str, int] = dict.fromkeys(RESULTS, 0)

    @property
    def active(self) -> int:
        self._expire()
        return len(self._up)

    def answered(self, request: Request, status: int) -> None:
        """A final response sent upstream for an INVITE or a BYE (``request``)."""
        try:
            call_id = request.call_id
            if call_id is None:
                return
            if request.method == "BYE":
                started = self._up.pop(call_id, None)
                if started is not None:
                    self._observe(max(0.0, self.clock() - started))
                return
            to = request.to
            if to is None or to.tag is not None:
                return  # a re-INVITE (RFC 3261 §14) is no new call
        except ParseError:
            return
        if status in (401, 407):
            return  # a challenge: the caller tries again with credentials (the same call)
        result = "answered" if status < 300 else "cancelled" if status == 487 else "failed"
        self.results[result] = self.results.get(result, 0) + 1
        if status < 300 and call_id not in self._up:
            self._up[call_id] = self.clock()
            if len(self._up) > self.max_calls:
                self._up.popitem(last=False)

    def _expire(self) -> None:
        oldest = self.clock() - self.max_age
        up = self._up
        while up:
            call_id, started = next(iter(up.items()))
            if started > oldest:
                break
            del up[call_id]
