"""Runs the core's sans-I/O transaction machines (RFC 3261 §17) on an asyncio loop.

A :class:`RunningTransaction` owns one machine, its timers (``loop.call_later`` handles) and, for a proxied
INVITE branch, its Timer C guard (§16.6 step 11). Every input returns effects, which are carried out at once
and in order: ``Send`` goes to the ``send`` callback (the EdgePort writes to a socket), ``StartTimer`` /
``CancelTimer`` schedule or cancel a handle (a restart replaces the running handle of that name), and the
effects meant for the transaction user (Deliver, SendAck, TimeoutToTU, TransportErrorToTU, CancelBranch,
Terminated) go to the :class:`TransactionUser`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from routr_ray.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Transaction,
)
from routr_ray.sip.transaction_effects import (
    CancelBranch,
    CancelTimer,
    Deliver,
    Effect,
    Send,
    SendAck,
    StartTimer,
    Terminated,
    TimeoutToTU,
    Timer,
    TimerCGuard,
    TransportErrorToTU,
)

__all__ = ["RunningTransaction", "SendCallback", "TransactionUser"]


class SendCallback(Protocol):
    def __call__(self, txn: RunningTransaction, message: Any, retransmission: bool) -> None: ...


class TransactionUser(Protocol):
    """What the EdgePort does with the machine's TU effects."""

    def txn_deliver(self, txn: RunningTransaction, message: Any) -> None: ...

    def txn_send_ack(self, txn: RunningTransaction, response: Any) -> None: ...

    def txn_timeout(self, txn: RunningTransaction, timer: Timer) -> None: ...

    def txn_transport_error(self, txn: RunningTransaction) -> None: ...

    def txn_cancel_branch(self, txn: RunningTransaction) -> None: ...

    def txn_terminated(self, txn: RunningTransaction) -> None: ...


class RunningTransaction:
    """One live transaction. ``context`` is free for the EdgePort (its per-transaction state)."""

    __slots__ = ("machine", "key", "_loop", "_send", "_tu", "_handles", "timer_c", "context", "done")

    def __init__(
        self,
        machine: Transaction,
        key: Any,
        *,
        send: SendCallback,
        tu: TransactionUser,
        timer_c: TimerCGuard | None = None,
        context: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.machine = machine
        self.key = key
        self._loop = loop or asyncio.get_running_loop()
        self._send = send
        self._tu = tu
        self._handles: dict[Timer, asyncio.TimerHandle] = {}
        self.timer_c = timer_c
        self.context = context
        self.done = False

    def __repr__(self) -> str:
        return f"<RunningTransaction {self.machine!r} key={self.key!r}>"

    @property
    def is_invite(self) -> bool:
        return isinstance(self.machine, InviteClientTransaction | InviteServerTransaction)

    @property
    def is_client(self) -> bool:
        return isinstance(self.machine, InviteClientTransaction | NonInviteClientTransaction)

    @property
    def request(self) -> Any:
        return self.machine.request

    # inputs ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.run(self.machine.start())
        if self.timer_c is not None and not self.done:
            self.run(self.timer_c.start())

    def on_response(self, status: int, response: Any) -> None:
        machine = self.machine
        assert isinstance(machine, InviteClientTransaction | NonInviteClientTransaction)
        if self.timer_c is not None:
            self.run(self.timer_c.on_response(status))
        self.run(machine.on_response(status, response))

    def on_request(self, request: Any) -> None:
        machine = self.machine
        assert isinstance(machine, InviteServerTransaction | NonInviteServerTransaction)
        self.run(machine.on_request(request))

    def send_response(self, status: int, response: Any) -> bool:
        """Answer on a server transaction; False when the state discarded it (e.g. a second final)."""
        machine = self.machine
        assert isinstance(machine, InviteServerTransaction | NonInviteServerTransaction)
        effects = machine.send_response(status, response)
        self.run(effects)
        for effect in effects:
            if type(effect) is Send:
                return True
        return False

    def on_ack(self, ack: Any) -> None:
        machine = self.machine
        assert isinstance(machine, InviteServerTransaction)
        self.run(machine.on_ack(ack))

    def on_transport_error(self) -> None:
        self.run(self.machine.on_transport_error())

    def stop_retransmissions(self) -> None:
        """Stop resending the request (Timers A and E) and keep the rest: a branch being cancelled before any
        provisional response (RFC 3261 §9.1 forbids the CANCEL until one arrives) stops knocking, as Kamailio's tm
        does, and still ends on Timer B/F when nothing comes back."""
        self._cancel(Timer.A)
        self._cancel(Timer.E)

    def stop_timer_c(self) -> None:
        if self.timer_c is not None:
            self.timer_c.running = False
            self._cancel(Timer.C)

    def abandon(self) -> None:
        """Drop every timer without telling the TU (EdgePort shutdown)."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self.done = True

    # effects ---------------------------------------------------------------------------------------
    def run(self, effects: list[Effect]) -> None:
        tu = self._tu
        for effect in effects:
            if isinstance(effect, Send):
                self._send(self, effect.message, effect.retransmission)
            elif isinstance(effect, StartTimer):
                self._cancel(effect.timer)
                self._handles[effect.timer] = self._loop.call_later(effect.seconds, self._fire, effect.timer)
            elif isinstance(effect, CancelTimer):
                self._cancel(effect.timer)
            elif isinstance(effect, Deliver):
                tu.txn_deliver(self, effect.message)
            elif isinstance(effect, SendAck):
                tu.txn_send_ack(self, effect.response)
            elif isinstance(effect, TimeoutToTU):
                tu.txn_timeout(self, effect.timer)
            elif isinstance(effect, TransportErrorToTU):
                tu.txn_transport_error(self)
            elif isinstance(effect, CancelBranch):
                tu.txn_cancel_branch(self)
            elif isinstance(effect, Terminated):
                if not self.done:
                    self.done = True
                    # Timer C belongs to the branch, not the machine: it stops with it
                    self.stop_timer_c()
                    tu.txn_terminated(self)

    def _cancel(self, timer: Timer) -> None:
        handle = self._handles.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _fire(self, timer: Timer) -> None:
        self._handles.pop(timer, None)
        if timer is Timer.C:
            if self.timer_c is not None and not self.done:
                self.run(self.timer_c.on_timer())
            return
        self.run(self.machine.on_timer(timer))
