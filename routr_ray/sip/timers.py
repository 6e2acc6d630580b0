"""Transaction timer values (RFC 3261 §17 and Table 4, RFC 6026 §8.11), never a clock."""

from __future__ import annotations

from dataclasses import dataclass

from .transaction_effects import Timer

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """T1 (RTT estimate), T2 (maximum non-INVITE/response retransmit interval), T4 (maximum time a
    message stays in the network), Timer D for unreliable transports and Timer C for proxied INVITEs.

    RFC 3261 §17.1.1.1: T1 defaults to 500 ms, T2 to 4 s, T4 to 5 s; Timer D is "at least 32 s".
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    timer_c: float = 180.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0 or self.timer_d < 0 or self.timer_c <= 0:
            raise ValueError(f"invalid timer values: {self}")

    def initial(self, timer: Timer, reliable: bool) -> float | None:
        """First duration of ``timer``; ``None`` when it is not used on this kind of transport.

        Retransmission timers (A, E, G) do not run on reliable transports; the wait timers D, I, J and K
        are zero there (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
        """
        table = _INITIAL.get(self)
        if table is None:
            table = {(t, r): self._initial(t, r) for t in Timer for r in (False, True)}
            if len(_INITIAL) < 64:
                _INITIAL[self] = table
        return table[(timer, reliable)]

    def _initial(self, timer: Timer, reliable: bool) -> float | None:
        match timer:
            case Timer.A | Timer.E | Timer.G:
                return None if reliable else self.t1
            case Timer.B | Timer.F | Timer.H | Timer.L | Timer.M:
                return 64 * self.t1
            case Timer.D:
                return 0.0 if reliable else self.timer_d
            case Timer.I | Timer.K:
                return 0.0 if reliable else self.t4
            case Timer.J:
                return 0.0 if reliable else 64 * self.t1
            case Timer.C:
                return self.timer_c
        raise ValueError(timer)  # pragma: no cover

    def backoff(self, timer: Timer, current: float) -> float:
        """Next interval of a retransmission timer: A doubles without bound (§17.1.1.2, bounded by
        Timer B), E and G double up to T2 (§17.1.2.2, §17.2.1)."""
        if timer is Timer.A:
            return current * 2
        return min(current * 2, self.t2)


# TimerConfig -> {(timer, reliable): initial duration}: the values are a pure function of the (frozen) config
_INITIAL: dict[TimerConfig, dict[tuple[Timer, bool], float | None]] = {}

DEFAULT_TIMERS = TimerConfig()
