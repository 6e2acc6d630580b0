"""RunningTransaction: the core's transaction machines driven on a real asyncio loop with short timers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from routr_ray.edge.txn_runner import RunningTransaction
from routr_ray.sip import Request, Response, parse
from routr_ray.sip.timers import TimerConfig
from routr_ray.sip.transaction import (
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
)
from routr_ray.sip.transaction_effects import Timer, TimerCGuard

pytestmark = pytest.mark.timeout(10)

FAST = TimerConfig(t1=0.01, t2=0.04, t4=0.05, timer_d=0.05, timer_c=0.1)


def message(method: str) -> Request:
    msg = parse(
        (
            f"{method} sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKrun1\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c1\r\n"
            f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


class Recorder:
    """Both the send callback and the transaction user: records every call in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.terminated = asyncio.Event()

    def send(self, txn: RunningTransaction, msg: Any, retransmission: bool) -> None:
        self.events.append(("send", retransmission))

    def txn_deliver(self, txn: RunningTransaction, msg: Any) -> None:
        self.events.append(("deliver", getattr(msg, "status", None)))

    def txn_send_ack(self, txn: RunningTransaction, response: Any) -> None:
        self.events.append(("ack", response.status))

    def txn_timeout(self, txn: RunningTransaction, timer: Timer) -> None:
        self.events.append(("timeout", timer))

    def txn_transport_error(self, txn: RunningTransaction) -> None:
        self.events.append(("transport_error", None))

    def txn_cancel_branch(self, txn: RunningTransaction) -> None:
        self.events.append(("cancel_branch", None))

    def txn_terminated(self, txn: RunningTransaction) -> None:
        self.events.append(("terminated", None))
        self.terminated.set()

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def running(machine: Any, rec: Recorder, **kwargs: Any) -> RunningTransaction:
    return RunningTransaction(machine, "key", send=rec.send, tu=rec, **kwargs)


async def test_non_invite_client_retransmits_over_udp_then_times_out() -> None:
    rec = Recorder()
    txn = running(NonInviteClientTransaction(message("OPTIONS"), reliable=False, timers=FAST), rec)
    txn.start()
    await asyncio.wait_for(rec.terminated.wait(), 3)
    sends = [e for e in rec.events if e[0] == "send"]
    assert sends[0] == ("send", False) and len(sends) >= 4  # Timer E: T1, 2T1, 4T1, T2 ... until Timer F
    assert all(retrans for _, retrans in sends[1:])
    assert ("timeout", Timer.F) in rec.events
    assert txn.done and txn.is_client and not txn.is_invite


async def test_non_invite_client_over_a_reliable_transport_sends_once_and_delivers_the_final() -> None:
    rec = Recorder()
    request = message("MESSAGE")
    txn = running(NonInviteClientTransaction(request, reliable=True, timers=FAST), rec)
    txn.start()
    txn.on_response(200, request.make_response(200))
    await asyncio.wait_for(rec.terminated.wait(), 1)
    assert rec.names() == ["send", "deliver", "terminated"]
    assert rec.events[1] == ("deliver", 200)


async def test_invite_client_acks_a_non_2xx_itself_and_stops_timer_c() -> None:
    rec = Recorder()
    request = message("INVITE")
    guard = TimerCGuard(FAST.timer_c)
    txn = running(InviteClientTransaction(request, reliable=True, timers=FAST), rec, timer_c=guard)
    txn.start()
    txn.on_response(486, request.make_response(486, to_tag="b"))
    assert ("ack", 486) in rec.events and ("deliver", 486) in rec.events
    await asyncio.wait_for(rec.terminated.wait(), 1)
    assert not guard.running
    await asyncio.sleep(FAST.timer_c * 1.5)  # Timer C was cancelled with the branch: no late effect
    assert "cancel_branch" not in rec.names() and "timeout" not in rec.names()


async def test_timer_c_after_a_provisional_asks_to_cancel_the_branch() -> None:
    rec = Recorder()
    request = message("INVITE")
    txn = running(InviteClientTransaction(request, reliable=True, timers=FAST), rec,
                  timer_c=TimerCGuard(FAST.timer_c))
    txn.start()
    txn.on_response(180, request.make_response(180, to_tag="b"))
    await asyncio.sleep(FAST.timer_c * 1.6)
    assert rec.names().count("cancel_branch") == 1
    txn.abandon()


async def test_timer_c_without_a_provisional_is_a_timeout() -> None:
    rec = Recorder()
    slow = TimerConfig(t1=1.0, t2=4.0, t4=5.0, timer_d=1.0, timer_c=0.05)  # Timer B (64 s) never fires here
    txn = running(InviteClientTransaction(message("INVITE"), reliable=True, timers=slow), rec,
                  timer_c=TimerCGuard(slow.timer_c))
    txn.start()
    await asyncio.sleep(0.1)
    assert ("timeout", Timer.C) in rec.events
    txn.abandon()


async def test_server_transaction_resends_the_last_response_to_a_retransmission() -> None:
    rec = Recorder()
    request = message("REGISTER")
    txn = running(NonInviteServerTransaction(request, reliable=False, timers=FAST), rec)
    txn.start()
    assert txn.send_response(200, request.make_response(200, to_tag="r")) is True
    txn.on_request(request)
    assert [e for e in rec.events if e[0] == "send"] == [("send", False), ("send", True)]
    assert txn.send_response(500, request.make_response(500)) is False  # a second final is discarded
    await asyncio.wait_for(rec.terminated.wait(), 2)  # Timer J


async def test_invite_server_absorbs_the_ack_and_stops_retransmitting() -> None:
    rec = Recorder()
    request = message("INVITE")
    txn = running(InviteServerTransaction(request, reliable=False, timers=FAST), rec)
    txn.start()
    txn.send_response(486, request.make_response(486, to_tag="b"))
    await asyncio.sleep(FAST.t1 * 2.5)  # Timer G retransmitted at least once
    ack = request.copy()
    ack.method = "ACK"
    ack.headers.set("CSeq", "1 ACK")
    txn.on_ack(ack)
    sent = len([e for e in rec.events if e[0] == "send"])
    assert sent >= 2
    await asyncio.wait_for(rec.terminated.wait(), 2)  # Timer I
    assert len([e for e in rec.events if e[0] == "send"]) == sent


async def test_abandon_drops_every_timer_silently() -> None:
    rec = Recorder()
    txn = running(NonInviteClientTransaction(message("OPTIONS"), reliable=False, timers=FAST), rec)
    txn.start()
    txn.abandon()
    await asyncio.sleep(FAST.t1 * 70)
    assert rec.names() == ["send"] and txn.done


async def test_transport_error_reaches_the_user() -> None:
    rec = Recorder()
    txn = running(NonInviteClientTransaction(message("OPTIONS"), reliable=True, timers=FAST), rec)
    txn.start()
    txn.on_transport_error()
    assert "transport_error" in rec.names()
    assert isinstance(txn.request, Request) and not isinstance(txn.request, Response)
