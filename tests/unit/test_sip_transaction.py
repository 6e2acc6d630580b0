"""RFC 3261 §17 transaction machines (routr_ray.sip.transaction), table-driven tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routr_ray.sip.timers import DEFAULT_TIMERS, TimerConfig
from routr_ray.sip.transaction import (
    INVITE_CLIENT_TRANSITIONS,
    INVITE_SERVER_TRANSITIONS,
    NON_INVITE_CLIENT_TRANSITIONS,
    NON_INVITE_SERVER_TRANSITIONS,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
    Transaction,
)
from routr_ray.sip.transaction_effects import (
    CancelBranch,
    CancelTimer,
    Deliver,
    Send,
    SendAck,
    StartTimer,
    Terminated,
    TimeoutToTU,
    Timer,
    TimerCGuard,
    TransportErrorToTU,
)

REQ = "REQUEST"
A, B, D, E, F, G, H, I, J, K, L, M = (  # noqa: E741
    Timer.A, Timer.B, Timer.D, Timer.E, Timer.F, Timer.G, Timer.H, Timer.I, Timer.J, Timer.K, Timer.L, Timer.M,
)  # fmt: skip


def started(effects: list) -> list[tuple[Timer, float]]:
    return [(e.timer, e.seconds) for e in effects if isinstance(e, StartTimer)]


# --- INVITE client (Figure 5) -------------------------------------------------------------------------


def test_invite_client_unreliable_start() -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    assert tx.state is State.CALLING
    assert tx.start() == [Send(REQ), StartTimer(A, 0.5), StartTimer(B, 32.0)]
    with pytest.raises(RuntimeError):
        tx.start()


def test_invite_client_timer_a_doubles_without_cap_until_b() -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    tx.start()
    intervals = []
    for _ in range(6):
        effects = tx.on_timer(A)
        assert effects[0] == Send(REQ, retransmission=True)
        intervals.append(started(effects)[0][1])
    assert intervals == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    assert tx.on_timer(B) == [TimeoutToTU(B), CancelTimer(A), Terminated()]
    assert tx.terminated
    assert tx.on_timer(A) == []
    assert tx.on_response(200, "late") == []


def test_invite_client_reliable_has_no_timer_a() -> None:
    tx = InviteClientTransaction(REQ, reliable=True)
    assert tx.start() == [Send(REQ), StartTimer(B, 32.0)]
    assert tx.on_timer(A) == []  # never started: ignored
    assert tx.on_timer(B) == [TimeoutToTU(B), Terminated()]


def test_invite_client_provisional_stops_retransmission() -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    tx.start()
    assert tx.on_response(100, "100") == [CancelTimer(A), CancelTimer(B), Deliver("100")]
    assert tx.state is State.PROCEEDING
    assert tx.on_timer(A) == []  # a late firing after cancel does nothing
    assert tx.on_response(180, "180") == [Deliver("180")]
    assert tx.state is State.PROCEEDING


@pytest.mark.parametrize("provisional_first", [False, True])
def test_invite_client_non_2xx_acks_and_waits_timer_d(provisional_first: bool) -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    tx.start()
    if provisional_first:
        tx.on_response(180, "180")
    effects = tx.on_response(486, "486")
    assert [e for e in effects if not isinstance(e, CancelTimer)] == [
        SendAck("486"),
        Deliver("486"),
        StartTimer(D, 32.0),
    ]
    assert tx.state is State.COMPLETED
    # §17.1.1.2: a retransmitted final is ACKed again but not passed to the TU.
    assert tx.on_response(486, "486 again") == [SendAck("486 again")]
    assert tx.on_response(180, "stray") == []
    assert tx.on_timer(D) == [Terminated()]


def test_invite_client_non_2xx_reliable_terminates_at_once() -> None:
    tx = InviteClientTransaction(REQ, reliable=True)
    tx.start()
    assert tx.on_response(603, "603") == [CancelTimer(B), SendAck("603"), Deliver("603"), Terminated()]


def test_invite_client_2xx_accepted_state_rfc6026() -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    tx.start()
    tx.on_response(180, "180")
    assert tx.on_response(200, "200") == [Deliver("200"), StartTimer(M, 32.0)]
    assert tx.state is State.ACCEPTED
    # 2xx retransmissions and 2xx from other forks still reach the TU (it forwards them).
    assert tx.on_response(200, "200 fork") == [Deliver("200 fork")]
    assert tx.on_response(486, "486") == []
    assert tx.on_timer(M) == [Terminated()]


def test_invite_client_2xx_without_accepted_state() -> None:
    tx = InviteClientTransaction(REQ, reliable=False, accepted_state=False)
    tx.start()
    assert tx.on_response(200, "200") == [CancelTimer(A), CancelTimer(B), Deliver("200"), Terminated()]


@pytest.mark.parametrize("state_setup", ["calling", "proceeding", "completed"])
def test_invite_client_transport_error(state_setup: str) -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    tx.start()
    if state_setup == "proceeding":
        tx.on_response(180, "180")
    elif state_setup == "completed":
        tx.on_response(500, "500")
    effects = tx.on_transport_error()
    assert effects[0] == TransportErrorToTU()
    assert effects[-1] == Terminated()
    assert tx.running_timers == frozenset()


# --- non-INVITE client (Figure 6) ---------------------------------------------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2() -> None:
    tx = NonInviteClientTransaction(REQ, reliable=False)
    assert tx.start() == [Send(REQ), StartTimer(E, 0.5), StartTimer(F, 32.0)]
    intervals = [started(tx.on_timer(E))[0][1] for _ in range(7)]
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert tx.on_timer(F) == [TimeoutToTU(F), CancelTimer(E), Terminated()]


def test_non_invite_client_proceeding_retransmits_at_t2() -> None:
    tx = NonInviteClientTransaction(REQ, reliable=False)
    tx.start()
    assert tx.on_response(100, "100") == [Deliver("100")]
    assert tx.state is State.PROCEEDING
    # §17.1.2.2: in Proceeding Timer E is reset to T2, whatever its previous value.
    assert tx.on_timer(E) == [Send(REQ, retransmission=True), StartTimer(E, 4.0)]
    assert tx.on_timer(F) == [TimeoutToTU(F), CancelTimer(E), Terminated()]


@pytest.mark.parametrize("status", [200, 404])
def test_non_invite_client_final_waits_timer_k(status: int) -> None:
    tx = NonInviteClientTransaction(REQ, reliable=False)
    tx.start()
    assert tx.on_response(status, "final") == [CancelTimer(E), CancelTimer(F), Deliver("final"), StartTimer(K, 5.0)]
    assert tx.state is State.COMPLETED
    assert tx.on_response(status, "retransmitted") == []  # absorbed
    assert tx.on_timer(E) == []
    assert tx.on_timer(K) == [Terminated()]


def test_non_invite_client_reliable() -> None:
    tx = NonInviteClientTransaction(REQ, reliable=True)
    assert tx.start() == [Send(REQ), StartTimer(F, 32.0)]
    assert tx.on_response(200, "200") == [CancelTimer(F), Deliver("200"), Terminated()]


def test_non_invite_client_transport_error() -> None:
    tx = NonInviteClientTransaction(REQ, reliable=False)
    tx.start()
    assert tx.on_transport_error() == [TransportErrorToTU(), CancelTimer(E), CancelTimer(F), Terminated()]


# --- INVITE server (Figure 7) -------------------------------------------------------------------------


def test_invite_server_absorbs_retransmissions_with_last_provisional() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    assert tx.state is State.PROCEEDING
    assert tx.start() == [Deliver(REQ)]
    assert tx.on_request("INVITE again") == []  # nothing sent yet: nothing to resend
    assert tx.send_response(100, "100") == [Send("100")]
    assert tx.on_request("INVITE again") == [Send("100", retransmission=True)]
    assert tx.send_response(180, "180") == [Send("180")]
    assert tx.on_request("INVITE again") == [Send("180", retransmission=True)]


def test_invite_server_non_2xx_retransmits_with_timer_g_until_ack() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    tx.start()
    tx.send_response(100, "100")
    assert tx.send_response(486, "486") == [Send("486"), StartTimer(G, 0.5), StartTimer(H, 32.0)]
    assert tx.state is State.COMPLETED
    assert tx.last_status == 486
    assert tx.on_request("INVITE again") == [Send("486", retransmission=True)]
    intervals = []
    for _ in range(5):
        effects = tx.on_timer(G)
        assert effects[0] == Send("486", retransmission=True)
        intervals.append(started(effects)[0][1])
    assert intervals == [1.0, 2.0, 4.0, 4.0, 4.0]
    # The ACK for a non-2xx is absorbed hop by hop: no Deliver.
    assert tx.on_ack("ACK") == [CancelTimer(G), CancelTimer(H), StartTimer(I, 5.0)]
    assert tx.state is State.CONFIRMED
    assert tx.on_ack("ACK again") == []
    assert tx.on_request("INVITE again") == []
    assert tx.send_response(500, "500") == []
    assert tx.on_timer(I) == [Terminated()]


def test_invite_server_timer_h_means_ack_never_came() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    tx.start()
    tx.send_response(404, "404")
    assert tx.on_timer(H) == [TimeoutToTU(H), CancelTimer(G), Terminated()]


def test_invite_server_reliable() -> None:
    tx = InviteServerTransaction(REQ, reliable=True)
    tx.start()
    assert tx.send_response(486, "486") == [Send("486"), StartTimer(H, 32.0)]
    assert tx.on_ack("ACK") == [CancelTimer(H), Terminated()]


def test_invite_server_2xx_accepted_state() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    tx.start()
    assert tx.send_response(200, "200") == [Send("200"), StartTimer(L, 32.0)]
    assert tx.state is State.ACCEPTED
    assert tx.on_request("INVITE again") == []  # RFC 6026: absorbed
    assert tx.on_ack("ACK for 2xx") == [Deliver("ACK for 2xx")]  # end to end: passed to the TU
    assert tx.send_response(200, "200 from another fork") == [Send("200 from another fork")]
    assert tx.send_response(486, "486") == []
    assert tx.on_timer(L) == [Terminated()]


def test_invite_server_2xx_without_accepted_state() -> None:
    tx = InviteServerTransaction(REQ, reliable=False, accepted_state=False)
    tx.start()
    assert tx.send_response(200, "200") == [Send("200"), Terminated()]


def test_invite_server_transport_error() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    tx.start()
    tx.send_response(500, "500")
    assert tx.on_transport_error() == [TransportErrorToTU(), CancelTimer(G), CancelTimer(H), Terminated()]


# --- non-INVITE server (Figure 8) ---------------------------------------------------------------------


def test_non_invite_server_flow() -> None:
    tx = NonInviteServerTransaction(REQ, reliable=False)
    assert tx.state is State.TRYING
    assert tx.start() == [Deliver(REQ)]
    assert tx.on_request("again") == []  # Trying: discarded
    assert tx.send_response(100, "100") == [Send("100")]
    assert tx.state is State.PROCEEDING
    assert tx.on_request("again") == [Send("100", retransmission=True)]
    assert tx.send_response(200, "200") == [Send("200"), StartTimer(J, 32.0)]
    assert tx.state is State.COMPLETED
    assert tx.on_request("again") == [Send("200", retransmission=True)]
    assert tx.send_response(500, "500") == []  # other finals are discarded in Completed
    assert tx.last_status == 200
    assert tx.on_request("again") == [Send("200", retransmission=True)]
    assert tx.on_timer(J) == [Terminated()]


def test_non_invite_server_reliable_terminates_after_final() -> None:
    tx = NonInviteServerTransaction(REQ, reliable=True)
    tx.start()
    assert tx.send_response(404, "404") == [Send("404"), Terminated()]


def test_non_invite_server_whose_tu_keeps_completed_ends_with_its_final_on_udp() -> None:
    """The TU absorbs the Completed state's retransmissions itself: Timer J is zero; provisional responses are
    still resent by the machine while it lives."""
    tx = NonInviteServerTransaction(REQ, reliable=False, tu_keeps_completed=True)
    tx.start()
    assert tx.send_response(100, "100") == [Send("100")]
    assert tx.on_request("again") == [Send("100", retransmission=True)]
    assert tx.send_response(200, "200") == [Send("200"), Terminated()]
    assert tx.terminated and tx.last_status == 200


def test_non_invite_server_transport_error() -> None:
    tx = NonInviteServerTransaction(REQ, reliable=False)
    tx.start()
    assert tx.on_transport_error() == [TransportErrorToTU(), Terminated()]


# --- common rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [99, 700, 0])
def test_status_out_of_range(status: int) -> None:
    with pytest.raises(ValueError):
        NonInviteClientTransaction(REQ, reliable=False).on_response(status, "x")
    with pytest.raises(ValueError):
        NonInviteServerTransaction(REQ, reliable=False).send_response(status, "x")


def test_custom_timer_values() -> None:
    timers = TimerConfig(t1=0.1, t2=1.0, t4=2.0)
    tx = NonInviteClientTransaction(REQ, reliable=False, timers=timers)
    assert tx.start() == [Send(REQ), StartTimer(E, 0.1), StartTimer(F, pytest.approx(6.4))]
    assert tx.on_response(200, "200")[-1] == StartTimer(K, 2.0)
    srv = NonInviteServerTransaction(REQ, reliable=False, timers=timers)
    srv.start()
    assert srv.send_response(200, "200")[-1] == StartTimer(J, pytest.approx(6.4))


@pytest.mark.parametrize("kwargs", [{"t1": 0}, {"t1": 5.0, "t2": 4.0}, {"t4": 0}, {"timer_c": 0}])
def test_invalid_timer_config(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


@pytest.mark.parametrize(
    ("table", "machine"),
    [
        (INVITE_CLIENT_TRANSITIONS, InviteClientTransaction),
        (NON_INVITE_CLIENT_TRANSITIONS, NonInviteClientTransaction),
        (INVITE_SERVER_TRANSITIONS, InviteServerTransaction),
        (NON_INVITE_SERVER_TRANSITIONS, NonInviteServerTransaction),
    ],
)
def test_every_started_timer_has_a_row_for_its_firing(table, machine) -> None:
    for (state, _event), transition in table.items():
        target = transition.next_state or state
        for action in transition.actions:
            if action.op.value in ("start", "backoff", "restart at T2"):
                assert (target, action.timer) in table, (state, action)
    assert not any(state is State.TERMINATED for state, _ in table)
    assert (machine.initial_state, next(iter(table))[1]) in table


# --- whole-transaction timing, driven by a simulated clock -------------------------------------------


class Simulator:
    """Runs a transaction's timers against a fake clock; records when each Send happened."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.now = 0.0
        self.sends: list[tuple[float, object]] = []
        self.tu: list[object] = []
        self._deadlines: dict[Timer, float] = {}

    def apply(self, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, StartTimer):
                self._deadlines[effect.timer] = self.now + effect.seconds
            elif isinstance(effect, CancelTimer):
                self._deadlines.pop(effect.timer, None)
            elif isinstance(effect, Send):
                self.sends.append((self.now, effect.message))
            else:
                self.tu.append(effect)

    def run(self, until: float, inputs: dict[float, Callable[[], list]] | None = None) -> None:
        inputs = inputs or {}
        times = sorted(inputs)
        while not self.tx.terminated:
            next_timer = min(self._deadlines.items(), key=lambda kv: kv[1], default=None)
            next_input = times[0] if times else None
            if next_timer is None and next_input is None:
                return
            if next_input is not None and (next_timer is None or next_input <= next_timer[1]):
                self.now = times.pop(0)
                self.apply(inputs[self.now]())
                continue
            timer, when = next_timer
            if when > until:
                return
            self.now = when
            del self._deadlines[timer]
            self.apply(self.tx.on_timer(timer))


def test_invite_over_udp_sends_seven_times_then_times_out() -> None:
    tx = InviteClientTransaction(REQ, reliable=False)
    sim = Simulator(tx)
    sim.apply(tx.start())
    sim.run(until=100)
    assert [t for t, _ in sim.sends] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert sim.now == 64 * DEFAULT_TIMERS.t1
    assert sim.tu == [TimeoutToTU(B), Terminated()]


def test_non_invite_over_udp_sends_eleven_times_then_times_out() -> None:
    tx = NonInviteClientTransaction(REQ, reliable=False)
    sim = Simulator(tx)
    sim.apply(tx.start())
    sim.run(until=100)
    assert [t for t, _ in sim.sends] == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert sim.tu == [TimeoutToTU(F), Terminated()]


def test_invite_server_completes_when_ack_arrives_over_udp() -> None:
    tx = InviteServerTransaction(REQ, reliable=False)
    sim = Simulator(tx)
    sim.apply(tx.start())
    sim.apply(tx.send_response(100, "100"))
    sim.apply(tx.send_response(486, "486"))
    sim.run(until=100, inputs={2.0: lambda: tx.on_ack("ACK")})
    assert [t for t, m in sim.sends if m == "486"] == [0, 0.5, 1.5]
    assert tx.terminated
    assert sim.now == 2.0 + DEFAULT_TIMERS.t4


# --- Timer C -----------------------------------------------------------------------------------------


def test_timer_c_reset_by_101_199_not_by_100() -> None:
    guard = TimerCGuard()
    assert guard.start() == [StartTimer(Timer.C, 180.0)]
    assert guard.on_response(100) == []
    assert guard.on_response(180) == [StartTimer(Timer.C, 180.0)]
    assert guard.on_timer() == [CancelBranch()]
    assert guard.on_timer() == []


def test_timer_c_without_provisional_acts_as_408() -> None:
    guard = TimerCGuard(seconds=200)
    assert guard.start() == [StartTimer(Timer.C, 200)]
    assert guard.on_timer() == [TimeoutToTU(Timer.C)]


def test_timer_c_stopped_by_final() -> None:
    guard = TimerCGuard()
    guard.start()
    assert guard.on_response(200) == [CancelTimer(Timer.C)]
    assert guard.on_timer() == []
    assert guard.on_response(180) == []
    with pytest.raises(ValueError):
        TimerCGuard(0)


# --- property: any input sequence keeps the effect contract -------------------------------------------

_INPUTS = st.lists(
    st.one_of(
        st.tuples(st.just("timer"), st.sampled_from(list(Timer))),
        st.tuples(st.just("response"), st.sampled_from([100, 180, 200, 202, 302, 404, 486, 500, 603])),
        st.tuples(st.just("request"), st.just(0)),
        st.tuples(st.just("ack"), st.just(0)),
        st.tuples(st.just("transport_error"), st.just(0)),
    ),
    max_size=40,
)

_MACHINES = [InviteClientTransaction, NonInviteClientTransaction, InviteServerTransaction, NonInviteServerTransaction]


@settings(max_examples=300, deadline=None)
@given(machine=st.sampled_from(_MACHINES), reliable=st.booleans(), inputs=_INPUTS)
def test_effect_contract_holds_for_any_input_sequence(machine, reliable: bool, inputs) -> None:
    tx = machine(REQ, reliable=reliable)
    running: set[Timer] = set()
    terminated = 0
    effects = tx.start()
    for kind, value in [("start", 0), *inputs]:
        if kind == "timer":
            # The runner only fires timers that are running.
            if value not in running:
                continue
            running.discard(value)
            effects = tx.on_timer(value)
        elif kind == "response":
            if isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
                effects = tx.send_response(value, f"r{value}")
            else:
                effects = tx.on_response(value, f"r{value}")
        elif kind == "request" and hasattr(tx, "on_request"):
            effects = tx.on_request("again")
        elif kind == "ack" and hasattr(tx, "on_ack"):
            effects = tx.on_ack("ACK")
        elif kind == "transport_error":
            effects = tx.on_transport_error()
        elif kind != "start":
            continue
        if terminated:
            assert effects == []
        for effect in effects:
            assert not terminated, "nothing may follow Terminated"
            if isinstance(effect, StartTimer):
                assert effect.seconds > 0
                if reliable:
                    assert effect.timer not in (A, E, G)
                running.add(effect.timer)
            elif isinstance(effect, CancelTimer):
                assert effect.timer in running
                running.discard(effect.timer)
            elif isinstance(effect, Terminated):
                terminated += 1
        assert running == set(tx.running_timers)
        assert tx.terminated == bool(terminated)
    assert terminated <= 1
    if terminated:
        assert running == set()
