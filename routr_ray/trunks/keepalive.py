"""OPTIONS keepalive of trunk URIs and peer bindings, sans-I/O (issue 15; like Kamailio's dispatcher module).

A :class:`PingTarget` is one server to ping: an enabled outbound URI of a Trunk with ``keepalive``, or a binding
(registered Contact) of a Peer with ``keepalive`` (``targets.py`` builds them). A :class:`Probe` keeps one
target's state:

* it starts **up** (as Kamailio's destinations start active): a server is trusted until pings say otherwise;
* every ``interval`` seconds it sends an ``OPTIONS`` (:meth:`Probe.ping`); **any final response** counts as an
  answer, a 404 or a 503 included (Kamailio's default: the server is there and speaks SIP; RFC 3261 §11 lets a
  server answer OPTIONS as it would an INVITE), while no final response within ``timeout`` seconds, an ICMP error
  or a transport error (the sender returns None) is a failure;
* ``failures_before_down`` failures in a row mark it **down** (Kamailio's ``ds_probing_threshold``), then
  ``successes_before_up`` answers in a row mark it up again (``ds_inactive_threshold``); a down target is pinged
  at the same interval.

Down means "tried last": Connect orders a trunk's URIs with the down ones after the others, Location picks a
peer's other bindings first, the EdgePort's hold-down reorders its alternates; with nothing else left a down
target is still tried (docs/trunks.md "Keepalive").

The OPTIONS (RFC 3261 §11.1): Request-URI and To the target's URI without a user part, From
``sip:keepalive@<target host>`` with a tag, a new Call-ID for every ping, ``Max-Forwards: 70``, the Via completed by
the sender (``edge/originate.py``), no body.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from routr_ray.config.resources import Keepalive
from routr_ray.sip import Headers, Request, Response
from routr_ray.sip.uri import format_host

__all__ = ["PingTarget", "Probe", "ProbeState", "ProbeStatus"]

VIA_HOST = "0.0.0.0"  # completed by the sender (edge/originate.py)


class ProbeState(enum.Enum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class PingTarget:
    kind: str  # "trunk" or "peer"
    ref: str  # the Trunk's or Peer's ref
    transport: str  # lower case
    host: str
    port: int
    settings: Keepalive
    aor: str = ""  # a peer binding: the Peer's AOR
    contact: str = ""  # a peer binding: its Contact URI

    @property
    def uri(self) -> str:
        """The OPTIONS Request-URI, and where the EdgePort sends it."""
        text = f"sip:{format_host(self.host.strip('[]'))}:{self.port}"
        return text if self.transport == "udp" else f"{text};transport={self.transport}"

    @property
    def label(self) -> str:
        """How status and metrics name the target: ``udp:203.0.113.7:5060``."""
        return f"{self.transport}:{format_host(self.host.strip('[]'))}:{self.port}"

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.kind, self.ref, self.label, self.contact


@dataclass(frozen=True)
class ProbeStatus:
    kind: str
    ref: str
    target: str  # PingTarget.label
    state: ProbeState
    pinged: bool  # at least one ping is over
    failures: int  # in a row
    successes: int  # in a row
    last_status: int  # the last answer's status code (0: none yet)
    last_error: str
    since: float  # when the state last changed (the caller's clock)


class Probe:
    def __init__(self, target: PingTarget, *, now: float, delay: float = 0.0) -> None:
        self.target = target
        self.due = now + delay
        self.state = ProbeState.UP
        self.pinged = False
        self.failures = 0
        self.successes = 0
        self.last_status = 0
        self.last_error = ""
        self.since = now
        self._cseq = 0

    def status(self) -> ProbeStatus:
        t = self.target
        return ProbeStatus(t.kind, t.ref, t.label, self.state, self.pinged, self.failures, self.successes,
                           self.last_status, self.last_error, self.since)

    def ping(self, now: float) -> Request:
        """The OPTIONS of this round; the next round is due ``interval`` seconds after this one started."""
        self.due = now + self.target.settings.interval
        self._cseq += 1
        host = format_host(self.target.host.strip("[]"))
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {VIA_HOST};rport")
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:keepalive@{host}>;tag={secrets.token_hex(6)}")
        headers.add("To", f"<{self.target.uri}>")
        headers.add("Call-ID", f"{secrets.token_hex(12)}@routr-ray")
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        headers.add("User-Agent", "routr-ray")
        headers.add("Content-Length", "0")
        return Request("OPTIONS", self.target.uri, headers)

    def on_result(self, response: Response | None, now: float, error: str = "") -> bool:
        """The ping's final response (None: a timeout, an ICMP or transport error); True when the state changed."""
        self.pinged = True
        settings = self.target.settings
        if response is not None:
            self.last_status, self.last_error = response.status, ""
            self.failures = 0
            self.successes += 1
            if self.state is ProbeState.DOWN and self.successes >= settings.successes_before_up:
                self.state, self.since = ProbeState.UP, now
                return True
            return False
        self.last_error = error or "no answer (timeout, ICMP or transport error)"
        self.successes = 0
        self.failures += 1
        if self.state is ProbeState.UP and self.failures >= settings.failures_before_down:
            self.state, self.since = ProbeState.DOWN, now
            return True
        return False
