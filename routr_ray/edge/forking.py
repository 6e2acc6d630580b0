"""Forking: the branches of one INVITE and the final response its caller gets (RFC 3261 §16.6-16.7; issue 16).

The processor (Connect, ``processors/connect/forking.py``) answers a forked INVITE with its first branch as the
message and the others in metadata (``routr-ray.branches``, each a whole SIP request with its own next hop, and
``routr-ray.fork`` for the first one's group and the groups' ring timeouts). The EdgePort owns the client
transactions; this module holds what it decides with, free of I/O:

* branches ring by group, lowest first: every branch of a group at once; the next group when every branch of the
  current one has ended without a 2xx or 6xx, or when the group's ring timeout passes (the EdgePort then CANCELs
  the group's branches and counts each as a 408);
* the first 2xx is relayed and every other pending branch is CANCELled (reason "Call completed elsewhere",
  RFC 3326); a later 2xx is relayed too (§16.7 step 5: the caller BYEs the extra dialog);
* a 6xx ends the fork: the other branches are CANCELled and, once every branch has ended, the 6xx goes upstream
  (§16.7 steps 5-6);
* otherwise, when no branch is left, the best final response (§16.7 step 6): a 6xx if any, else one of the lowest
  class; a chosen 401/407 carries every WWW-Authenticate and Proxy-Authenticate of all the 401s and 407s
  received; a chosen 503 becomes 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from routr_ray.edge.directives import HopDirective, read_directive
from routr_ray.sip import ParseError, Request, Response, parse

__all__ = ["BRANCHES_KEY", "FORK_KEY", "ForkedBranch", "Fork", "read_branches"]

log = logging.getLogger(__name__)

# Copied from routr_ray.processors.connect.processor (the edge does not import processors/).
BRANCHES_KEY = "routr-ray.branches"
FORK_KEY = "routr-ray.fork"
MAX_BRANCHES = 16
_CHALLENGE_HEADERS = ("WWW-Authenticate", "Proxy-Authenticate")
CANCEL_REASON_ANSWERED = 'SIP;cause=200;text="Call completed elsewhere"'
CANCEL_REASON_DECLINED = 'SIP;cause=600;text="Busy Everywhere"'
CANCEL_REASON_TIMEOUT = 'SIP;cause=408;text="Ring timeout"'


@dataclass(slots=True)
class ForkedBranch:
    """A branch the processor asked for: the request as it must be sent, its next hop, its group."""

    request: Request
    directive: HopDirective
    group: int


def read_branches(metadata: Mapping[str, str] | None) -> tuple[int, dict[int, float], list[ForkedBranch]] | None:
    """The first branch's group, the groups' ring timeouts and the other branches of a forked request; None when
    the answer is not forked. Unusable entries are skipped (logged), never an exception."""
    if not metadata or BRANCHES_KEY not in metadata:
        return None
    try:
        fork = json.loads(metadata.get(FORK_KEY) or "{}")
        entries = json.loads(metadata[BRANCHES_KEY])
        group = int(fork.get("group", 0))
        timeouts = {int(g): float(t) for g, t in (fork.get("timeouts") or {}).items() if float(t) > 0}
    except (ValueError, TypeError, AttributeError) as exc:
        log.warning("unusable fork metadata: %s", exc)
        return None
    branches: list[ForkedBranch] = []
    for entry in entries[:MAX_BRANCHES] if isinstance(entries, list) else ():
        try:
            message = parse(str(entry["message"]).encode("latin-1"))
            if not isinstance(message, Request):
                continue
            hop_metadata = {k: str(v) for k, v in entry.items() if k not in ("message", "group")}
            branches.append(ForkedBranch(message, read_directive(hop_metadata), int(entry.get("group", 0))))
        except (ParseError, KeyError, ValueError, TypeError, UnicodeEncodeError) as exc:
            log.warning("unusable fork branch skipped: %s", exc)
    return group, timeouts, branches


def _class_rank(status: int) -> tuple[int, int]:
    """Lower is better (§16.7 step 6): 6xx first, then the lowest class."""
    return (0, 0) if status >= 600 else (1, status // 100)


@dataclass
class Fork:
    """The state of one forked INVITE on its server transaction."""

    waiting: list[ForkedBranch]  # later groups, lowest group first
    timeouts: dict[int, float] = field(default_factory=dict)
    group: int = 0  # the group ringing now
    live: int = 0  # branches started and not yet ended
    answered: bool = False  # a 2xx went upstream
    declined: bool = False  # a 6xx arrived: nothing new starts, the 6xx wins
    best: Response | None = None
    best_status: int = 0
    challenges: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, group: int, timeouts: dict[int, float], others: list[ForkedBranch]) -> tuple[Fork, list[ForkedBranch]]:
        """The fork and the other branches that ring with the first one (same group)."""
        now = [b for b in others if b.group <= group]
        later = sorted((b for b in others if b.group > group), key=lambda b: b.group)
        return cls(later, timeouts, group), now

    @property
    def ended(self) -> bool:
        return self.live <= 0 and (self.answered or self.declined or not self.waiting)

    def started(self) -> None:
        self.live += 1

    def answered_2xx(self) -> None:
        self.answered = True
        self.waiting.clear()

    def branch_ended(self, response: Response | None, status: int) -> None:
        """A branch ended with a final >= 300 (``response``; None for a local 408/480/503 of ``status``)."""
        self.live -= 1
        if status >= 600:
            self.declined = True
            self.waiting.clear()
        if status in (401, 407) and response is not None:
            for name in _CHALLENGE_HEADERS:
                self.challenges.extend((name, value) for value in response.headers.get_all(name))
        if self.best_status == 0 or _class_rank(status) < _class_rank(self.best_status) or (
            _class_rank(status) == _class_rank(self.best_status) and self.best is None and response is not None
        ):
            self.best, self.best_status = response, status

    def next_group(self) -> list[ForkedBranch]:
        """When every branch of the current group has ended without a 2xx/6xx: the next group's branches."""
        if self.live > 0 or self.answered or self.declined or not self.waiting:
            return []
        self.group = self.waiting[0].group
        ready = [b for b in self.waiting if b.group == self.group]
        self.waiting = [b for b in self.waiting if b.group != self.group]
        return ready

    def final(self, make: Callable[[int], Response]) -> Response:
        """The response the caller gets once the fork has ended without a 2xx (§16.7 step 6). ``make(status)``
        builds a response of our own (for branches that ended without one, and 500 for a chosen 503)."""
        status = self.best_status or 408
        response = self.best
        if response is None or status == 503:
            response = make(500 if status == 503 else status)
        if status in (401, 407) and self.challenges:
            response = response.copy()  # type: ignore[assignment]
            for name in _CHALLENGE_HEADERS:
                response.headers.remove(name)
            for name, value in self.challenges:
                response.headers.add(name, value)
        return response
