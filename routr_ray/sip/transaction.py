"""RFC 3261 §17 transaction state machines (with RFC 6026's Accepted state), table-driven and sans-I/O.

Theory of operation. Each machine is a table ``{(state, event): Transition(next_state, actions)}``
(RFC 3261 Figures 5-8, one table per figure). An input method maps what happened to an ``Event`` (or a
``Timer``), looks the pair up, runs the actions and moves to the next state. A pair missing from the
table means "nothing to do": late timers, responses absorbed in Completed, anything after Terminated.
Actions turn into effects (``transaction_effects``); the machine never touches a socket or a clock.

Rules kept outside the tables, in one place each:
- Retransmission timers (A, E, G) are skipped on reliable transports; wait timers (D, I, J, K) of zero
  fire at once, so "reliable → Terminated immediately" needs no extra rows (§17.1.1.2, §17.1.2.2,
  §17.2.1, §17.2.2).
- Entering Terminated cancels every running timer and ends with ``Terminated()``.

The four machines and their inputs:

==========================  ==============================================================
``InviteClientTransaction``     ``start()``, ``on_response(status, msg)``, ``on_timer``, ``on_transport_error``
``NonInviteClientTransaction``  same
``InviteServerTransaction``     ``start()``, ``on_request(msg)`` (retransmission), ``on_ack(msg)``,
                                ``send_response(status, msg)``, ``on_timer``, ``on_transport_error``
``NonInviteServerTransaction``  same without ``on_ack``
==========================  ==============================================================

The INVITE server does not send 100 Trying itself: the edge passes it through ``send_response(100, …)``
so it is remembered and resent for retransmitted INVITEs (§17.2.1).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .timers import DEFAULT_TIMERS, TimerConfig
from .transaction_effects import (
    CancelTimer,
    Deliver,
    Effect,
    Send,
    SendAck,
    StartTimer,
    Terminated,
    TimeoutToTU,
    Timer,
    TransportErrorToTU,
)

__all__ = [
    "INVITE_CLIENT_TRANSITIONS",
    "INVITE_SERVER_TRANSITIONS",
    "NON_INVITE_CLIENT_TRANSITIONS",
    "NON_INVITE_SERVER_TRANSITIONS",
    "Event",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "State",
    "Transaction",
]


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Event(enum.Enum):
    START = "start"  # client: send the request; server: the request arrived
    RECV_1XX = "recv 1xx"
    RECV_2XX = "recv 2xx"
    RECV_FINAL = "recv 300-699"
    RECV_REQUEST = "recv request retransmission"
    RECV_ACK = "recv ACK"
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_FINAL = "TU sends 300-699"
    TRANSPORT_ERROR = "transport error"


class _Op(enum.Enum):
    SEND_REQUEST = "send request"
    RESEND_REQUEST = "resend request"
    SEND_RESPONSE = "send response"
    RESEND_RESPONSE = "resend last response"
    SEND_ACK = "send ACK"
    DELIVER = "deliver to TU"
    TIMEOUT = "timeout to TU"
    TRANSPORT_ERROR = "transport error to TU"
    START = "start"
    BACKOFF = "backoff"
    RESTART_T2 = "restart at T2"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class _Action:
    op: _Op
    timer: Timer | None = None

    def __str__(self) -> str:
        return f"{self.op.value} {self.timer.value}" if self.timer else self.op.value


@dataclass(frozen=True, slots=True)
class Transition:
    next_state: State | None  # None: stay
    actions: tuple[_Action, ...] = ()


EventKey = Event | Timer
Table = Mapping[tuple[State, EventKey], Transition]

SEND_REQUEST = _Action(_Op.SEND_REQUEST)
RESEND_REQUEST = _Action(_Op.RESEND_REQUEST)
SEND_RESPONSE = _Action(_Op.SEND_RESPONSE)
RESEND_RESPONSE = _Action(_Op.RESEND_RESPONSE)
SEND_ACK = _Action(_Op.SEND_ACK)
DELIVER = _Action(_Op.DELIVER)
TRANSPORT_ERROR_TO_TU = _Action(_Op.TRANSPORT_ERROR)


def _start(timer: Timer) -> _Action:
    return _Action(_Op.START, timer)


def _backoff(timer: Timer) -> _Action:
    return _Action(_Op.BACKOFF, timer)


def _cancel(timer: Timer) -> _Action:
    return _Action(_Op.CANCEL, timer)


def _timeout(timer: Timer) -> _Action:
    return _Action(_Op.TIMEOUT, timer)


_S = State
_E = Event
_T = Timer
_STAY = None


# RFC 3261 Figure 5 (§17.1.1) + RFC 6026 §7.2 (Accepted, Timer M).
INVITE_CLIENT_TRANSITIONS: Table = {
    (_S.CALLING, _E.START): Transition(_STAY, (SEND_REQUEST, _start(_T.A), _start(_T.B))),
    # §17.1.1.2: "When timer A fires, the client transaction MUST retransmit the request ... and reset the
    # timer with a value of 2*T1", doubling each time.
    (_S.CALLING, _T.A): Transition(_STAY, (RESEND_REQUEST, _backoff(_T.A))),
    # "If the client transaction is still in the Calling state when timer B fires, [it] SHOULD inform the
    # TU that a timeout has occurred."
    (_S.CALLING, _T.B): Transition(_S.TERMINATED, (_timeout(_T.B),)),
    (_S.CALLING, _E.RECV_1XX): Transition(_S.PROCEEDING, (_cancel(_T.A), _cancel(_T.B), DELIVER)),
    (_S.CALLING, _E.RECV_2XX): Transition(_S.ACCEPTED, (_cancel(_T.A), _cancel(_T.B), DELIVER, _start(_T.M))),
    (_S.CALLING, _E.RECV_FINAL): Transition(
        _S.COMPLETED, (_cancel(_T.A), _cancel(_T.B), SEND_ACK, DELIVER, _start(_T.D))
    ),
    (_S.CALLING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    (_S.PROCEEDING, _E.RECV_1XX): Transition(_STAY, (DELIVER,)),
    (_S.PROCEEDING, _E.RECV_2XX): Transition(_S.ACCEPTED, (DELIVER, _start(_T.M))),
    (_S.PROCEEDING, _E.RECV_FINAL): Transition(_S.COMPLETED, (SEND_ACK, DELIVER, _start(_T.D))),
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # §17.1.1.2: "Any retransmissions of the final response that are received while in the Completed state
    # MUST cause the ACK to be re-passed to the transport layer for retransmission, but the newly received
    # response MUST NOT be passed up to the TU."
    (_S.COMPLETED, _E.RECV_FINAL): Transition(_STAY, (SEND_ACK,)),
    (_S.COMPLETED, _T.D): Transition(_S.TERMINATED),
    (_S.COMPLETED, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # RFC 6026 §8.4: 2xx retransmissions (and 2xx from other forks) in Accepted go to the TU.
    (_S.ACCEPTED, _E.RECV_2XX): Transition(_STAY, (DELIVER,)),
    (_S.ACCEPTED, _T.M): Transition(_S.TERMINATED),
}

# RFC 3261 Figure 6 (§17.1.2).
NON_INVITE_CLIENT_TRANSITIONS: Table = {
    (_S.TRYING, _E.START): Transition(_STAY, (SEND_REQUEST, _start(_T.E), _start(_T.F))),
    # §17.1.2.2: in Trying, Timer E doubles up to T2.
    (_S.TRYING, _T.E): Transition(_STAY, (RESEND_REQUEST, _backoff(_T.E))),
    (_S.TRYING, _T.F): Transition(_S.TERMINATED, (_timeout(_T.F),)),
    (_S.TRYING, _E.RECV_1XX): Transition(_S.PROCEEDING, (DELIVER,)),
    (_S.TRYING, _E.RECV_2XX): Transition(_S.COMPLETED, (_cancel(_T.E), _cancel(_T.F), DELIVER, _start(_T.K))),
    (_S.TRYING, _E.RECV_FINAL): Transition(_S.COMPLETED, (_cancel(_T.E), _cancel(_T.F), DELIVER, _start(_T.K))),
    (_S.TRYING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # "If Timer E fires while in the Proceeding state, the request MUST be passed to the transport layer
    # for retransmission, and Timer E MUST be reset with a value of T2 seconds."
    (_S.PROCEEDING, _T.E): Transition(_STAY, (RESEND_REQUEST, _Action(_Op.RESTART_T2, _T.E))),
    (_S.PROCEEDING, _T.F): Transition(_S.TERMINATED, (_timeout(_T.F),)),
    (_S.PROCEEDING, _E.RECV_1XX): Transition(_STAY, (DELIVER,)),
    (_S.PROCEEDING, _E.RECV_2XX): Transition(
        _S.COMPLETED, (_cancel(_T.E), _cancel(_T.F), DELIVER, _start(_T.K))
    ),
    (_S.PROCEEDING, _E.RECV_FINAL): Transition(
        _S.COMPLETED, (_cancel(_T.E), _cancel(_T.F), DELIVER, _start(_T.K))
    ),
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # Completed: response retransmissions are absorbed (no row); Timer K ends it.
    (_S.COMPLETED, _T.K): Transition(_S.TERMINATED),
}

# RFC 3261 Figure 7 (§17.2.1) + RFC 6026 §7.1 (Accepted, Timer L).
INVITE_SERVER_TRANSITIONS: Table = {
    (_S.PROCEEDING, _E.START): Transition(_STAY, (DELIVER,)),
    # "If a request retransmission is received while in the Proceeding state, the most recent provisional
    # response that was received from the TU MUST be passed to the transport layer for retransmission."
    (_S.PROCEEDING, _E.RECV_REQUEST): Transition(_STAY, (RESEND_RESPONSE,)),
    (_S.PROCEEDING, _E.SEND_1XX): Transition(_STAY, (SEND_RESPONSE,)),
    (_S.PROCEEDING, _E.SEND_2XX): Transition(_S.ACCEPTED, (SEND_RESPONSE, _start(_T.L))),
    (_S.PROCEEDING, _E.SEND_FINAL): Transition(_S.COMPLETED, (SEND_RESPONSE, _start(_T.G), _start(_T.H))),
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    (_S.COMPLETED, _E.RECV_REQUEST): Transition(_STAY, (RESEND_RESPONSE,)),
    # Timer G: retransmit the final response, doubling up to T2.
    (_S.COMPLETED, _T.G): Transition(_STAY, (RESEND_RESPONSE, _backoff(_T.G))),
    # "If timer H fires while in the Completed state, it implies that the ACK was never received. ... the
    # server transaction MUST transition to the Terminated state, and MUST indicate to the TU that a
    # transaction failure has occurred."
    (_S.COMPLETED, _T.H): Transition(_S.TERMINATED, (_timeout(_T.H),)),
    # "If an ACK is received while the server transaction is in the Completed state, the server transaction
    # MUST transition to the Confirmed state." The ACK is absorbed (hop by hop), not delivered.
    (_S.COMPLETED, _E.RECV_ACK): Transition(_S.CONFIRMED, (_cancel(_T.G), _cancel(_T.H), _start(_T.I))),
    (_S.COMPLETED, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # Confirmed: further ACKs and INVITE retransmissions are absorbed (no row); Timer I ends it.
    (_S.CONFIRMED, _T.I): Transition(_S.TERMINATED),
    # RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed, ACKs (for the 2xx) and further 2xx
    # from the TU pass through; Timer L ends it.
    (_S.ACCEPTED, _E.RECV_ACK): Transition(_STAY, (DELIVER,)),
    (_S.ACCEPTED, _E.SEND_2XX): Transition(_STAY, (SEND_RESPONSE,)),
    (_S.ACCEPTED, _E.TRANSPORT_ERROR): Transition(_STAY, (TRANSPORT_ERROR_TO_TU,)),
    (_S.ACCEPTED, _T.L): Transition(_S.TERMINATED),
}

# RFC 3261 Figure 8 (§17.2.2).
NON_INVITE_SERVER_TRANSITIONS: Table = {
    (_S.TRYING, _E.START): Transition(_STAY, (DELIVER,)),
    # "Once in the Trying state, any further request retransmissions are discarded." (no row for
    # RECV_REQUEST in Trying)
    (_S.TRYING, _E.SEND_1XX): Transition(_S.PROCEEDING, (SEND_RESPONSE,)),
    (_S.TRYING, _E.SEND_2XX): Transition(_S.COMPLETED, (SEND_RESPONSE, _start(_T.J))),
    (_S.TRYING, _E.SEND_FINAL): Transition(_S.COMPLETED, (SEND_RESPONSE, _start(_T.J))),
    (_S.TRYING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    (_S.PROCEEDING, _E.RECV_REQUEST): Transition(_STAY, (RESEND_RESPONSE,)),
    (_S.PROCEEDING, _E.SEND_1XX): Transition(_STAY, (SEND_RESPONSE,)),
    (_S.PROCEEDING, _E.SEND_2XX): Transition(_S.COMPLETED, (SEND_RESPONSE, _start(_T.J))),
    (_S.PROCEEDING, _E.SEND_FINAL): Transition(_S.COMPLETED, (SEND_RESPONSE, _start(_T.J))),
    (_S.PROCEEDING, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
    # "While in the Completed state, the server transaction MUST pass the final response to the transport
    # layer for retransmission whenever a retransmission of the request is received. Any other final
    # responses passed by the TU to the server transaction MUST be discarded while in the Completed state."
    (_S.COMPLETED, _E.RECV_REQUEST): Transition(_STAY, (RESEND_RESPONSE,)),
    (_S.COMPLETED, _T.J): Transition(_S.TERMINATED),
    (_S.COMPLETED, _E.TRANSPORT_ERROR): Transition(_S.TERMINATED, (TRANSPORT_ERROR_TO_TU,)),
}


def _without_accepted(table: Table) -> Table:
    """RFC 3261 as published (no RFC 6026): a 2xx terminates the INVITE transaction at once."""
    result = {key: tr for key, tr in table.items() if key[0] is not State.ACCEPTED}
    for key, tr in result.items():
        if tr.next_state is State.ACCEPTED:
            actions = tuple(a for a in tr.actions if a.timer not in (Timer.L, Timer.M))
            result[key] = Transition(State.TERMINATED, actions)
    return result


_RFC3261_INVITE_CLIENT = _without_accepted(INVITE_CLIENT_TRANSITIONS)
_RFC3261_INVITE_SERVER = _without_accepted(INVITE_SERVER_TRANSITIONS)


def _response_event(status: int, *, sending: bool) -> Event:
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} out of range 100-699")
    if status < 200:
        return Event.SEND_1XX if sending else Event.RECV_1XX
    if status < 300:
        return Event.SEND_2XX if sending else Event.RECV_2XX
    return Event.SEND_FINAL if sending else Event.RECV_FINAL


class Transaction:
    """Common engine: table lookup, actions to effects, timer bookkeeping."""

    table: Table
    initial_state: State

    def __init__(self, request: Any, *, reliable: bool, timers: TimerConfig = DEFAULT_TIMERS) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self.state = self.initial_state
        self.last_response: Any = None
        self.last_status: int | None = None
        self._intervals: dict[Timer, float] = {}
        self._running: set[Timer] = set()
        self._started = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.value} reliable={self.reliable}>"

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    @property
    def running_timers(self) -> frozenset[Timer]:
        return frozenset(self._running)

    def start(self) -> list[Effect]:
        """Client: send the request. Server: deliver the request that created the transaction."""
        if self._started:
            raise RuntimeError("transaction already started")
        self._started = True
        return self._fire(Event.START)

    def on_timer(self, timer: Timer) -> list[Effect]:
        """A timer this transaction started has fired. Timers no longer running are ignored."""
        if timer not in self._running:
            return []
        self._running.discard(timer)
        return self._fire(timer)

    def on_transport_error(self) -> list[Effect]:
        return self._fire(Event.TRANSPORT_ERROR)

    # -- engine ------------------------------------------------------------------------------------

    def _fire(self, event: EventKey, message: Any = None) -> list[Effect]:
        effects: list[Effect] = []
        self._step(event, message, effects)
        return effects

    def _step(self, event: EventKey, message: Any, effects: list[Effect]) -> None:
        if self.state is State.TERMINATED:
            return
        transition = self.table.get((self.state, event))
        if transition is None:
            return
        if transition.next_state is not None:
            self.state = transition.next_state
        due_now: list[Timer] = []
        for action in transition.actions:
            self._apply(action, message, effects, due_now)
        if self.state is State.TERMINATED:
            for timer in sorted(self._running, key=lambda t: t.value):
                effects.append(CancelTimer(timer))
            self._running.clear()
            effects.append(Terminated())
            return
        # Wait timers of zero (reliable transports) fire immediately instead of being scheduled.
        for timer in due_now:
            self._step(timer, None, effects)

    def _apply(self, action: _Action, message: Any, effects: list[Effect], due_now: list[Timer]) -> None:
        op, timer = action.op, action.timer
        if op is _Op.SEND_REQUEST:
            effects.append(Send(self.request))
        elif op is _Op.RESEND_REQUEST:
            effects.append(Send(self.request, retransmission=True))
        elif op is _Op.SEND_RESPONSE:
            self.last_response = message
            effects.append(Send(message))
        elif op is _Op.RESEND_RESPONSE:
            if self.last_response is not None:
                effects.append(Send(self.last_response, retransmission=True))
        elif op is _Op.SEND_ACK:
            effects.append(SendAck(message))
        elif op is _Op.DELIVER:
            effects.append(Deliver(self.request if message is None else message))
        elif op is _Op.TIMEOUT:
            assert timer is not None
            effects.append(TimeoutToTU(timer))
        elif op is _Op.TRANSPORT_ERROR:
            effects.append(TransportErrorToTU())
        else:
            assert timer is not None
            self._apply_timer(op, timer, effects, due_now)

    def _initial_seconds(self, timer: Timer) -> float | None:
        return self.timers.initial(timer, self.reliable)

    def _apply_timer(self, op: _Op, timer: Timer, effects: list[Effect], due_now: list[Timer]) -> None:
        if op is _Op.CANCEL:
            if timer in self._running:
                self._running.discard(timer)
                effects.append(CancelTimer(timer))
            return
        if op is _Op.START:
            seconds = self._initial_seconds(timer)
        elif op is _Op.BACKOFF:
            seconds = self.timers.backoff(timer, self._intervals[timer])
        else:  # RESTART_T2
            seconds = self.timers.t2
        if seconds is None:  # retransmission timer on a reliable transport
            return
        self._intervals[timer] = seconds
        if seconds == 0:
            due_now.append(timer)
            return
        self._running.add(timer)
        effects.append(StartTimer(timer, seconds))


class _ClientTransaction(Transaction):
    def on_response(self, status: int, response: Any) -> list[Effect]:
        """A response matched this transaction (RFC 3261 §17.1.3)."""
        self.last_status = status
        return self._fire(_response_event(status, sending=False), response)


class InviteClientTransaction(_ClientTransaction):
    """RFC 3261 §17.1.1 (Figure 5); with ``accepted_state`` (default) RFC 6026's Accepted state."""

    initial_state = State.CALLING

    def __init__(
        self,
        request: Any,
        *,
        reliable: bool,
        timers: TimerConfig = DEFAULT_TIMERS,
        accepted_state: bool = True,
    ) -> None:
        self.table = INVITE_CLIENT_TRANSITIONS if accepted_state else _RFC3261_INVITE_CLIENT
        super().__init__(request, reliable=reliable, timers=timers)


class NonInviteClientTransaction(_ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    initial_state = State.TRYING
    table = NON_INVITE_CLIENT_TRANSITIONS


class _ServerTransaction(Transaction):
    def on_request(self, request: Any) -> list[Effect]:
        """A retransmission of the request that created the transaction (RFC 3261 §17.2.3 match)."""
        return self._fire(Event.RECV_REQUEST, request)

    def send_response(self, status: int, response: Any) -> list[Effect]:
        """The TU answers. Responses the state does not allow (e.g. a second final) are discarded."""
        event = _response_event(status, sending=True)
        before = self.state
        effects = self._fire(event, response)
        if effects or self.state is not before:
            self.last_status = status
        return effects


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 §17.2.1 (Figure 7); with ``accepted_state`` (default) RFC 6026's Accepted state."""

    initial_state = State.PROCEEDING

    def __init__(
        self,
        request: Any,
        *,
        reliable: bool,
        timers: TimerConfig = DEFAULT_TIMERS,
        accepted_state: bool = True,
    ) -> None:
        self.table = INVITE_SERVER_TRANSITIONS if accepted_state else _RFC3261_INVITE_SERVER
        super().__init__(request, reliable=reliable, timers=timers)

    def on_ack(self, ack: Any) -> list[Effect]:
        """An ACK matched this transaction: absorbed for a non-2xx final (Completed → Confirmed), delivered
        to the TU in Accepted (an ACK for a 2xx is end to end)."""
        return self._fire(Event.RECV_ACK, ack)


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8).

    ``tu_keeps_completed``: the transaction user absorbs the request retransmissions of the Completed state
    itself (it keeps the final response's bytes, which is all that state needs), so Timer J is zero and the
    machine terminates as soon as its final response is sent, as on a reliable transport. The EdgePort does
    this on UDP (``routr_ray/edge/completed.py``): a machine holding the parsed request and response for the
    64*T1 of Timer J costs far more memory and garbage-collector time than the bytes.
    """

    initial_state = State.TRYING
    table = NON_INVITE_SERVER_TRANSITIONS

    def __init__(
        self,
        request: Any,
        *,
        reliable: bool,
        timers: TimerConfig = DEFAULT_TIMERS,
        tu_keeps_completed: bool = False,
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.tu_keeps_completed = tu_keeps_completed

    def _initial_seconds(self, timer: Timer) -> float | None:
        if timer is Timer.J and self.tu_keeps_completed:
            return 0.0
        return self.timers.initial(timer, self.reliable)
