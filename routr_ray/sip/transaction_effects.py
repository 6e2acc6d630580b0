"""Effects returned by the transaction machines (RFC 3261 §17) and the Timer C helper.

The machines never write to a socket or read a clock: they return a list of these values and the edge
carries them out in order. Message objects are opaque here (whatever the caller passed in).

Contract for whoever runs the effects:

- ``StartTimer(timer, seconds)`` (re)starts the named timer of that transaction, replacing a running one
  of the same name; when it fires, call ``on_timer(timer)``. Late or cancelled firings are harmless.
- ``CancelTimer(timer)`` stops it (a no-op if it already fired).
- ``Send(message)`` transmits the message on the transaction's transport; ``retransmission`` tells a
  retransmission from the first transmission (metrics, logs).
- ``SendAck(response)``: build the ACK for a non-2xx final response (RFC 3261 §17.1.1.3: same Request-URI,
  Call-ID, From, CSeq number and top Via as the INVITE, To from the response, method ACK) and send it.
- ``Deliver(message)``: pass the message to the transaction user (TU).
- ``TimeoutToTU(timer)``: the transaction timed out (client: Timer B/F, the edge answers 408 upstream;
  INVITE server: Timer H, the ACK never came).
- ``TransportErrorToTU()``: the transport failed (RFC 3261 §17.1.4 / §17.2.4).
- ``CancelBranch()`` (Timer C only): send a CANCEL for the branch (RFC 3261 §16.8).
- ``Terminated()``: the transaction is over; drop it from the transaction table. Always last.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CancelBranch",
    "CancelTimer",
    "Deliver",
    "Effect",
    "Send",
    "SendAck",
    "StartTimer",
    "Terminated",
    "TimeoutToTU",
    "Timer",
    "TimerCGuard",
    "TransportErrorToTU",
]


class Timer(enum.Enum):
    """RFC 3261 Table 4 timers, plus L and M of RFC 6026 §8.11."""

    A = "A"  # INVITE request retransmit (client, unreliable)
    B = "B"  # INVITE transaction timeout (client)
    C = "C"  # proxy INVITE transaction timeout (§16.6)
    D = "D"  # wait time for response retransmits (INVITE client)
    E = "E"  # non-INVITE request retransmit (client, unreliable)
    F = "F"  # non-INVITE transaction timeout (client)
    G = "G"  # INVITE response retransmit (server, unreliable)
    H = "H"  # wait time for ACK receipt (INVITE server)
    I = "I"  # noqa: E741  wait time for ACK retransmits (INVITE server)
    J = "J"  # wait time for non-INVITE request retransmits (server)
    K = "K"  # wait time for response retransmits (non-INVITE client)
    L = "L"  # wait time for accepted INVITE request retransmits (server, RFC 6026)
    M = "M"  # wait time for retransmission of 2xx to INVITE (client, RFC 6026)


@dataclass(frozen=True, slots=True)
class Send:
    message: Any
    retransmission: bool = False


@dataclass(frozen=True, slots=True)
class SendAck:
    response: Any


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    seconds: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Deliver:
    message: Any


@dataclass(frozen=True, slots=True)
class TimeoutToTU:
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransportErrorToTU:
    pass


@dataclass(frozen=True, slots=True)
class CancelBranch:
    pass


@dataclass(frozen=True, slots=True)
class Terminated:
    pass


Effect = Send | SendAck | StartTimer | CancelTimer | Deliver | TimeoutToTU | TransportErrorToTU | CancelBranch | Terminated


class TimerCGuard:
    """Timer C of a proxied INVITE branch (RFC 3261 §16.6 step 11, §16.7 step 2, §16.8).

    ``start()`` when the branch's INVITE is forwarded; ``on_response(status)`` for each response of the
    branch; ``on_timer()`` when Timer C fires. Default 180 s ("MUST be greater than 3 minutes" is the
    RFC's wording for the value; 3 minutes is what Routr users expect).
    """

    def __init__(self, seconds: float = 180.0) -> None:
        if seconds <= 0:
            raise ValueError("Timer C must be positive")
        self.seconds = seconds
        self.provisional_seen = False
        self.running = False

    def start(self) -> list[Effect]:
        self.running = True
        return [StartTimer(Timer.C, self.seconds)]

    def on_response(self, status: int) -> list[Effect]:
        if not self.running:
            return []
        if status >= 200:
            self.running = False
            return [CancelTimer(Timer.C)]
        self.provisional_seen = True
        # §16.7 step 2: "If a provisional response is received with status code 101-199, the proxy
        # MUST reset timer C"; a 100 does not reset it.
        if status > 100:
            return [StartTimer(Timer.C, self.seconds)]
        return []

    def on_timer(self) -> list[Effect]:
        """§16.8: with a provisional response seen, CANCEL the branch; without one, behave as if the
        branch had answered 408 (``TimeoutToTU``)."""
        if not self.running:
            return []
        self.running = False
        if self.provisional_seen:
            return [CancelBranch()]
        return [TimeoutToTU(Timer.C)]
