"""What Connect decided for one request: answer it (`Reply`) or send it on (`Forward`), as plain data.

The decision logic (registrar, router) only produces these; `processor.py` turns them into the
`MessageResponse` (SDK responses and alterations). That keeps the rules testable without protobuf plumbing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from routr_ray.proto.gen import location_pb2
from routr_ray.sip.uri import URI

Headers = tuple[tuple[str, str], ...]


class Direction:
    """`X-Call-Direction` values (Routr's `RoutingDirection`, routr.md §3.7), plus in-dialog."""

    AGENT_TO_AGENT = "agent-to-agent"
    AGENT_TO_PEER = "agent-to-peer"
    AGENT_TO_PSTN = "agent-to-pstn"
    FROM_PSTN = "from-pstn"
    PEER_TO_AGENT = "peer-to-agent"
    PEER_TO_PSTN = "peer-to-pstn"
    IN_DIALOG = "in-dialog"


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the request with `status` (reason None = the RFC phrase) and extra `headers`."""

    status: int
    reason: str | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where the edge sends the forwarded request: an address and transport (upper case), and whether it
    must reuse the connection/flow the callee registered over (RFC 5626: `flow=True`)."""

    host: str
    port: int
    transport: str
    flow: bool = False
    edge_port_ref: str = ""


@dataclass(frozen=True, slots=True)
class Branch:
    """One target of a forked request (RFC 3261 §16.6): where it goes, its Request-URI, the binding, and its
    group (groups ring one after another, lowest first; see `forking.py`)."""

    next_hop: NextHop
    request_uri: URI
    route: location_pb2.Route | None = None
    group: int = 0


@dataclass(slots=True)
class Forward:
    """Forward the request: `request_uri` replaces the Request-URI (None keeps it), headers named in
    `remove_headers` are dropped, then `add_headers` are appended; `set_from` replaces the From
    value's display name and URI (tag kept). `alternatives` are further next hops to try in order on
    503/408/timeout (trunk failover). `route` is the Location binding chosen (None for trunks and
    in-dialog requests). `branches` are the other targets of a forked request (the first target is
    `next_hop`, in group `group`); `group_timeouts` bound how long a group rings, in seconds. For the dialog
    token (`dialogs.py`): `caller_trunk` / `callee_trunk` name the Trunk on either side (a call from / to the
    PSTN), `caller_trusted` / `callee_trusted` whether that side's identity headers are trusted (RFC 3325)."""

    direction: str
    next_hop: NextHop
    request_uri: URI | None = None
    route: location_pb2.Route | None = None
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    remove_headers: list[str] = field(default_factory=list)
    set_from: tuple[str | None, URI] | None = None
    alternatives: list[tuple[NextHop, URI]] = field(default_factory=list)
    metadata: Mapping[str, str] = field(default_factory=dict)
    in_dialog: bool = False
    drop_last_route: bool = False  # RFC 3261 §16.4: the last Route value became the Request-URI (strict router)
    branches: list[Branch] = field(default_factory=list)
    group: int = 0
    group_timeouts: dict[int, float] = field(default_factory=dict)
    caller_trunk: str | None = None
    callee_trunk: str | None = None
    caller_trusted: bool = False
    callee_trusted: bool = False
    # an in-dialog request whose route set names another EdgePort of this dialog (docs/distributed.md): that
    # EdgePort's tag, the address its Record-Route entry names (our Via toward the next hop: (host, port,
    # transport)), and how many leading Route values this hop consumed (ours and that EdgePort's)
    via_edge_tag: str = ""
    via_address: tuple[str, int, str] | None = None
    routes_used: int | None = None


Decision = Reply | Forward
