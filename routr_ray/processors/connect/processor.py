"""ConnectProcessor: Routr's Connect processor on the routr-ray SDK (issue 6; routr.md §3).

`process(MessageRequest) -> MessageResponse` (and `process_batch`) come from `routr_ray.processors.sdk`.
The decision (answer or forward where) comes from `Registrar` and `Router` as plain data; this module turns
it into the message the EdgePort sends, with the SDK alterations (routr.md §3.6):

forwarded request: leading own Route values removed (initial requests: every Route, we chose the target) →
Max-Forwards − 1 (483 at 0) → Authorization/Proxy-Authorization for our realms removed → `.invalid` Contact
fixed to the packet source → Request-URI := chosen Contact / trunk URI → identity, internal and DOD headers
replaced → own Via (no branch) → Record-Route with the dialog token `rrk` (two with `r2=on` when the two sides
use different interfaces; see `dialogs.py`) for dialog-creating requests → `X-Call-Direction`.

CANCEL is never routed here: the EdgePort answers a CANCEL hop by hop and cancels its own branches (RFC 3261
§16.10, `routr_ray/edge/edgeport.py` `_on_cancel`), so one that reaches Connect matches no transaction of ours and
is answered 481. RFC 3261 §16.10 would have a proxy forward an unmatched CANCEL statelessly; like common Kamailio
configurations we do not, on purpose: an unmatched CANCEL cannot be authenticated (it cannot answer a challenge,
§22.1), so forwarding it would let anyone steer unauthenticated requests (and, toward a trunk, its credentials).

Where to send it travels in `MessageResponse.metadata` (keys `NEXT_HOP_*` below): the Request-URI names the
callee's Contact, which for a flow (see `targets.py`) is not the address to send to.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable
from typing import Literal, NamedTuple

from routr_ray.config import Resources
from routr_ray.config.trunk_sources import TrunkSourceMatcher
from routr_ray.location.ops import LocationClient
from routr_ray.observability import tracing
from routr_ray.processors.alterations import (
    Interface,
    NoInterface,
    OwnAddresses,
    add_record_route,
    add_self_via,
    decrease_max_forwards,
    edge_interface,
    fix_invalid_contact,
    remove_authorization,
    remove_last_route,
    remove_own_routes,
    remove_top_via,
    route_to_strict_router,
    set_request_uri,
)
from routr_ray.processors.connect.access import Access, Principal
from routr_ray.processors.connect.auth import DigestGate, FailureTracker
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier
from routr_ray.processors.connect.decisions import Branch, Decision, Forward, NextHop, Reply
from routr_ray.processors.connect.dialogs import (
    DEFAULT_DIALOG_TTL,
    EDGE_PARAM,
    MAX_HOPS,
    TOKEN_PARAM,
    DialogTokens,
    host_key,
)
from routr_ray.processors.connect.headers import INTERNAL_HEADERS
from routr_ray.processors.connect.metrics import ConnectMetrics
from routr_ray.processors.connect.registrar import DEFAULT_EXPIRES, ExpiresPolicy, Registrar, source_of
from routr_ray.processors.connect.resources_index import ConnectIndex, ResourceSource, StaticResources
from routr_ray.processors.connect.router import DEFAULT_REALM, Router, next_hop_of, peer_realm
from routr_ray.processors.connect.web_agents import WebAgentGate, token_of
from routr_ray.processors.sdk import Context, Processor
from routr_ray.proto.gen import location_pb2, processor_pb2
from routr_ray.sip.digest import DEFAULT_MAX_NONCES, DigestAlgorithm, DigestAuthenticator, NonceUses
from routr_ray.sip.errors import ParseError
from routr_ray.sip.fields import NameAddr
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI, format_host
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.util.edge_tag import edge_tag
from routr_ray.util.server_health import HealthView

log = logging.getLogger(__name__)
MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

NEXT_HOP_KEY = "routr-ray.next-hop"
"""`sip:host:port;transport=x`: the address to send the forwarded request to."""
NEXT_HOP_FLOW_KEY = "routr-ray.next-hop.flow"
"""`"true"`: send over the connection/flow the callee registered on (it cannot accept a new one)."""
NEXT_HOP_EDGE_KEY = "routr-ray.next-hop.edge-port-ref"
"""The EdgePort the callee registered through, when that EdgePort sends the request (docs/distributed.md)."""
NEXT_HOP_EDGE_TAG_KEY = "routr-ray.next-hop.edge-tag"
"""The tag (`util/edge_tag.py`) of the EdgePort an in-dialog request goes on through (the dialog's other EdgePort)."""
FAILOVER_KEY = "routr-ray.failover"
"""Further Request-URIs (comma-separated) to try in order on 503/408/timeout (trunk URIs)."""
DIRECTION_KEY = "routr-ray.call-direction"
FORK_KEY = "routr-ray.fork"
"""JSON `{"group": g, "timeouts": {"g": seconds}}`: the message is the first branch of a forked INVITE, in group g."""
BRANCHES_KEY = "routr-ray.branches"
"""JSON list of the other branches: `{"message": SIP text (latin-1), "group": g, "routr-ray.next-hop": ...}`."""

_RECORD_ROUTE_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
# The methods Connect routes (RFC 3261 §20.5 Allow): the EdgePort's default `methods`; PUBLISH is not one (no
# presence server behind Connect), so it is not advertised.
HANDLED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "MESSAGE", "REGISTER", "SUBSCRIBE", "NOTIFY",
                   "REFER", "INFO", "UPDATE", "PRACK")
_ALLOW = ", ".join(HANDLED_METHODS)
_URI_SCHEMES = frozenset({"sip", "sips", "tel"})
DEFAULT_MAX_CONTACTS = 10
"""Bindings per AOR when the Agent/Peer sets no `maxContacts` (a REGISTER flood cannot grow an AOR forever)."""


SUPPORTED_OPTIONS = frozenset({"outbound"})
"""Option tags Connect understands as a UAS (RFC 5626 registrations: see registrar.py)."""


def unsupported_options(request: Request) -> list[str]:
    """The Require option tags Connect does not understand (RFC 3261 §8.2.2.3), as written."""
    return [tag for tag in (t.strip() for t in request.headers.get_all("Require"))
            if tag and tag.lower() not in SUPPORTED_OPTIONS]


def _trace_decision(span: object, decision: Decision) -> None:
    if isinstance(decision, Reply):
        span.set_attribute("sip.status_code", decision.status)  # type: ignore[attr-defined]
        return
    span.set_attribute("sip.call_direction", decision.direction)  # type: ignore[attr-defined]
    span.set_attribute("routr.next_hop", hop_uri(decision.next_hop))  # type: ignore[attr-defined]
    trunk = decision.metadata.get("routr-ray.trunk-ref") if decision.metadata else None
    if trunk:
        span.set_attribute("routr.trunk", trunk)  # type: ignore[attr-defined]
    if decision.branches:
        span.set_attribute("routr.branches", 1 + len(decision.branches))  # type: ignore[attr-defined]


class SendingEdge(NamedTuple):
    """Another EdgePort that sends a request for us (docs/distributed.md): its ref, tag and address toward the
    target."""

    ref: str
    tag: str
    interface: Interface


def hop_uri(hop: NextHop) -> str:
    return f"sip:{format_host(hop.host)}:{hop.port};transport={hop.transport.lower()}"


class ConnectProcessor(Processor):
    name = "connect"
    # handle_response only pops our Via and fixes a `.invalid` Contact: the EdgePort relays 1xx/2xx itself (one
    # Ray hop less each) and sends us the rest, and those with a `.invalid` Contact (see sdk.Processor).
    needs_success_responses = False

    def __init__(
        self,
        resources: Resources | ResourceSource,
        location: LocationClient,
        *,
        nonce_key: bytes,
        always_401: bool = False,
        algorithms: Iterable[DigestAlgorithm] = (DigestAlgorithm.MD5,),
        nonce_ttl: float = 300.0,
        expires: ExpiresPolicy = DEFAULT_EXPIRES,
        failures: FailureTracker | None = None,
        flow_request_uri: Literal["contact", "source"] = "contact",
        default_realm: str = DEFAULT_REALM,
        default_max_contacts: int = DEFAULT_MAX_CONTACTS,
        dialog_ttl: float = DEFAULT_DIALOG_TTL,
        max_tracked_nonces: int = DEFAULT_MAX_NONCES,
        clock=time.time,  # type: ignore[no-untyped-def]
        rng: random.Random | None = None,
        connect_tokens: ConnectTokenVerifier | None = None,
        metrics: ConnectMetrics | None = None,
        health: HealthView | None = None,
    ) -> None:
        self.connect_tokens = connect_tokens  # X-Connect-Token web agents (web_agents.py); None: header ignored
        self.metrics = metrics if metrics is not None else ConnectMetrics()
        self.source: ResourceSource = StaticResources(resources) if isinstance(resources, Resources) else resources
        self._index: ConnectIndex | None = None
        self._realms: frozenset[str] = frozenset()
        self._realms_of: ConnectIndex | None = None
        self.location = location
        digest = DigestAuthenticator(nonce_key, nonce_ttl=nonce_ttl, algorithms=tuple(algorithms),
                                     nonce_uses=NonceUses(max_tracked_nonces))
        gate = DigestGate(digest, always_401=always_401, clock=clock, algorithms_for=self._algorithms_for)
        # the sources of Trunks and Peers in the current resources are never banned (issue 14 item 8)
        failures = failures or FailureTracker(exempt=TrunkSourceMatcher(self.source.current))
        self.access = Access(gate, failures, self.metrics)
        self.web_agents = WebAgentGate(connect_tokens, self.access) if connect_tokens is not None else None
        self.registrar = Registrar(location, clock=clock)
        self.dialogs = DialogTokens(nonce_key, ttl=dialog_ttl, clock=clock)
        self._algorithms: dict[str, tuple[DigestAlgorithm, ...]] = {}
        self._algorithms_of: ConnectIndex | None = None
        self.default_realm = default_realm
        self.default_max_contacts = default_max_contacts
        # trunk_tokens: calls to a trunk's registered Contact (routr_ray/trunks); rng: trunk URI load share;
        # health: trunk URIs and peer bindings down by keepalive or held down, tried last (util/server_health.py)
        self.router = Router(location, self.access, self.dialogs, default_realm=default_realm,
                             trunk_tokens=TrunkContactTokens(nonce_key), rng=rng, web_agents=self.web_agents,
                             health=health)
        self.expires = expires
        self.flow_request_uri = flow_request_uri

    @property
    def index(self) -> ConnectIndex:
        """The index of the source's current set, rebuilt when the source hands out a new set."""
        current = self.source.current()
        if self._index is None or self._index.resources is not current:
            self._index = ConnectIndex(current)
        return self._index

    async def ready(self) -> bool:
        """Every Location shard answers (a REGISTER needs the shard of its AOR, which may be any of them)."""
        ping = getattr(self.location, "ping", None)
        if ping is not None:
            await ping()
        return True

    # ---- SDK steps ------------------------------------------------------------------------------

    async def handle(self, ctx: Context) -> MessageResponse | None:
        request = ctx.message
        assert isinstance(request, Request)
        started = time.perf_counter()
        if tracing.ON:
            with tracing.span("connect.route", {"sip.method": request.method}) as span:
                decision = await self.decide(request, ctx.request)
                if span is not None:
                    _trace_decision(span, decision)
        else:
            decision = await self.decide(request, ctx.request)
        if isinstance(decision, Reply):
            self.metrics.decided(request.method, None, decision.status, time.perf_counter() - started)
            return ctx.respond(decision.status, decision.reason, decision.headers)
        self.metrics.decided(request.method, decision.direction, None, time.perf_counter() - started)
        return self.render(ctx, request, decision)

    @property
    def metrics_registry(self) -> object:
        """What the deployment exports (routr_ray/actors/serve_app.py)."""
        return self.metrics.registry

    def handle_response(self, ctx: Context) -> MessageResponse:
        """RFC 3261 §16.7 step 3: our Via off the top; a WebRTC callee's `.invalid` Contact made reachable."""
        response = remove_top_via(ctx.message)
        response = fix_invalid_contact(response, Interface.of(ctx.request.sender) if ctx.request.HasField("sender")
                                       else None)
        return ctx.forward(response)

    # ---- decision -------------------------------------------------------------------------------

    async def decide(self, request: Request, msg: MessageRequest) -> Decision:
        method = request.method.upper()
        if method == "CANCEL":  # hop by hop at the EdgePort; one that reaches us matches nothing (module docstring)
            return Reply(481)
        if request.request_uri.scheme not in _URI_SCHEMES:  # RFC 3261 §16.3 step 2
            return Reply(416)
        index = self.index
        if method == "REGISTER":
            unsupported = unsupported_options(request)
            if unsupported:  # RFC 3261 §8.2.2.3: Connect is the UAS of a REGISTER (the registrar)
                return Reply(420, None, (("Unsupported", ", ".join(unsupported)),))
            return await self.register(index, request, msg)
        in_dialog = request.to is not None and request.to.tag is not None
        if method == "ACK" or in_dialog:
            routed = self.router.route_in_dialog(index, request, msg)
            if routed is not None:
                return routed
            if method == "ACK":  # not of a dialog we route, and never challenged: dropped (SDK)
                return Reply(403, "Forbidden (ACK not routed through this server)")
            # not routed through us with a dialog token: an initial request in disguise, authenticated as one
        if method == "OPTIONS" and request.request_uri.is_sip and request.request_uri.user is None:
            unsupported = unsupported_options(request)  # OPTIONS to the server itself: we are its UAS
            if unsupported:
                return Reply(420, None, (("Unsupported", ", ".join(unsupported)),))
            return Reply(200, None, (("Allow", _ALLOW),))
        return await self.router.route_initial(index, request, msg)

    async def register(self, index: ConnectIndex, request: Request, msg: MessageRequest) -> Reply:
        """Who registers (an Agent of the To/Request-URI Domain, else a Peer by username), authenticated
        in the Domain's realm, then the registrar. Peers register to their `aor` (routr.md §3.2)."""
        to_uri = request.to.uri if request.to is not None else None
        ruri = request.request_uri
        if to_uri is None or not to_uri.is_sip or not to_uri.user:
            return Reply(400, "Bad Request (To must name the address of record)")
        if self.web_agents is not None and token_of(request):
            return await self._register_web_agent(index, request, msg, f"sip:{to_uri.user}@{to_uri.host}")
        domain = index.domain(to_uri.host) or (index.domain(ruri.host) if ruri.is_sip else None)
        agent = index.agent(to_uri.user, domain.domain_uri) if domain is not None else None
        if agent is not None and not agent.enabled:
            agent = None
        peer = index.peer_by_username(to_uri.user) if agent is None else None
        if peer is not None and not peer.enabled:
            peer = None
        source = source_of(request, msg)[0]
        if agent is not None and domain is not None:
            principal = Principal(domain.domain_uri, index.credentials(agent.credentials_ref),
                                  index.acl(domain.access_control_list_ref))
        elif peer is not None:
            principal = Principal(peer_realm(index, request, self.default_realm),
                                  index.credentials(peer.credentials_ref),
                                  index.acl(peer.access_control_list_ref))
        else:
            realm = domain.domain_uri if domain is not None else peer_realm(index, request, self.default_realm)
            acl = index.acl(domain.access_control_list_ref) if domain is not None else None
            principal = Principal(realm, None, acl, known=False)
        denied = self.access.check(request, source, principal, msg)
        if denied is not None:
            return denied
        if peer is not None:
            return await self.registrar.register(
                request, msg, peer.aor, max_contacts=self._max_contacts(peer.max_contacts),
                policy=self.expires.for_resource(peer.expires),
            )
        assert agent is not None and domain is not None
        return await self.registrar.register(
            request, msg, f"sip:{agent.username}@{domain.domain_uri}",
            max_contacts=self._max_contacts(agent.max_contacts), policy=self.expires.for_resource(agent.expires),
        )

    async def _register_web_agent(self, index: ConnectIndex, request: Request, msg: MessageRequest,
                                  aor: str) -> Reply:
        """A web agent with an ``X-Connect-Token`` (routr.md §3.2 step 3): a valid token that allows REGISTER for
        this AOR in a Domain of ours registers it, without digest; anything else is 403 (never a challenge;
        ``web_agents.py``)."""
        assert self.web_agents is not None
        admitted = self.web_agents.admit(index, request, aor, source_of(request, msg)[0])
        if isinstance(admitted, Reply):
            return admitted
        return await self.registrar.register(request, msg, aor,
                                             max_contacts=self._max_contacts(admitted.claims.max_contacts),
                                             policy=self.expires.for_resource(None))

    def _max_contacts(self, configured: int) -> int:
        return configured if configured > 0 else self.default_max_contacts

    def _algorithms_for(self, realm: str) -> tuple[DigestAlgorithm, ...] | None:
        """The digest algorithms of a Domain's realm (its `digestAlgorithms`); None: the default (MD5)."""
        index = self.index
        if self._algorithms_of is not index:
            table: dict[str, tuple[DigestAlgorithm, ...]] = {}
            for domain in index.resources.domains:
                algorithms = tuple(a for a in (DigestAlgorithm.from_token(t) for t in domain.digest_algorithms) if a)
                if algorithms:
                    table[domain.domain_uri] = algorithms
            self._algorithms, self._algorithms_of = table, index
        return self._algorithms.get(realm)

    # ---- rendering ------------------------------------------------------------------------------

    def render(self, ctx: Context, request: Request, forward: Forward) -> MessageResponse:
        msg = ctx.request
        sender = Interface.of(msg.sender) if msg.HasField("sender") else None
        if forward.routes_used is not None:  # in-dialog: ours, and another EdgePort's of this dialog (router.py)
            out: Request = request.copy()  # type: ignore[assignment]
            for _ in range(forward.routes_used):
                out.headers.remove_first_value("Route")
        else:
            out = remove_own_routes(request, OwnAddresses.of_request(msg))
        if not forward.in_dialog:
            out.headers.remove("Route")  # we chose the target: a client's preloaded route set is not followed
        elif forward.drop_last_route:
            out = remove_last_route(out)  # RFC 3261 §16.4: it is the Request-URI now (set below)
        out = decrease_max_forwards(out)
        if not forward.in_dialog:
            # RFC 3261 §22.3: only credentials for our realms; others answer a challenge further on
            out = remove_authorization(out, realms=self._own_realms(self.index))
        out = fix_invalid_contact(out, sender)
        for name in (*INTERNAL_HEADERS, *forward.remove_headers):
            out.headers.remove(name)
        for name, value in forward.add_headers:
            out.headers.add(name, value)
        if forward.set_from is not None and out.from_ is not None:
            display, uri = forward.set_from
            anonymous = NameAddr(uri, display, dict(out.from_.params))
            out.headers.set("From", str(anonymous))
        if not forward.in_dialog:
            out.headers.add("X-Call-Direction", forward.direction)
        first_branch = Branch(forward.next_hop, forward.request_uri, forward.route, forward.group)
        # the EdgePort each target is sent from, when not this one (docs/distributed.md)
        senders = [self._sending_edge(msg, b) for b in (first_branch, *forward.branches)]
        token = ""
        if not forward.in_dialog and out.method.upper() in _RECORD_ROUTE_METHODS:
            # one for every branch: all their hops
            token = self._dialog_token(request, out, forward, sender, [s for s in senders if s is not None],
                                       edge_tag(msg.edge_port_ref))
        first, metadata = self._to_target(ctx, out, forward, first_branch, token, senders[0])
        metadata[DIRECTION_KEY] = forward.direction
        if forward.alternatives:
            metadata[FAILOVER_KEY] = ", ".join(str(uri) for _, uri in forward.alternatives)
        if forward.branches:  # a forked INVITE: the EdgePort rings every branch (issue 16, edge/forking.py)
            metadata[FORK_KEY] = json.dumps({"group": forward.group,
                                             "timeouts": {str(g): t for g, t in forward.group_timeouts.items()}})
            branches = []
            for branch, sending in zip(forward.branches, senders[1:], strict=True):
                rendered, hop_metadata = self._to_target(ctx, out, forward, branch, token, sending)
                branches.append({"message": bytes(rendered).decode("latin-1"), "group": branch.group,
                                 **hop_metadata})
            metadata[BRANCHES_KEY] = json.dumps(branches)
        metadata.update(forward.metadata)
        return ctx.forward(first, metadata)

    def _to_target(self, ctx: Context, base: Request, forward: Forward, branch: Branch, token: str,
                   sending: SendingEdge | None = None) -> tuple[Request, dict[str, str]]:
        """``base`` for one target: its Request-URI, our Via and Record-Route toward it, and where to send it.
        ``sending``: another EdgePort sends it (docs/distributed.md): its address goes into the Via and the
        callee-side Record-Route entry, and each entry names its EdgePort (``rre``)."""
        hop = branch.next_hop
        out = base
        if branch.request_uri is not None:
            out = set_request_uri(out, self._request_uri(branch.request_uri, hop, branch.route))
        if forward.in_dialog:
            out = route_to_strict_router(out)  # RFC 3261 §16.6 step 6: a next hop without `lr`
        if forward.via_address is not None:  # in-dialog through another EdgePort: the address it recorded
            target = Interface(*forward.via_address)
        elif sending is not None:
            target = sending.interface
        else:
            target = ctx.edge_interface(hop.host, hop.transport)
        out = add_self_via(out, target)
        if not forward.in_dialog and out.method.upper() in _RECORD_ROUTE_METHODS:
            origin = ctx.origin_interface() if ctx.request.HasField("sender") else target
            if sending is not None:
                out = add_record_route(out, origin, target, params=((TOKEN_PARAM, token),),
                                       origin_params=((EDGE_PARAM, edge_tag(ctx.request.edge_port_ref)),),
                                       target_params=((EDGE_PARAM, sending.tag),))
            else:
                out = add_record_route(out, origin, target, params=((TOKEN_PARAM, token),))
        metadata = {NEXT_HOP_KEY: hop_uri(hop)}
        if hop.flow:
            metadata[NEXT_HOP_FLOW_KEY] = "true"
        if hop.edge_port_ref and (sending is not None or hop.flow or hop.edge_port_ref == ctx.request.edge_port_ref):
            # (a binding of another EdgePort whose address we do not know, not a flow: sent from here)
            metadata[NEXT_HOP_EDGE_KEY] = hop.edge_port_ref
        if forward.via_edge_tag:
            metadata[NEXT_HOP_EDGE_TAG_KEY] = forward.via_edge_tag
        return out, metadata

    @staticmethod
    def _sending_edge(msg: MessageRequest, branch: Branch) -> SendingEdge | None:
        """The EdgePort that sends a request for ``branch``, when it is not the one the request arrived at: the one
        the callee registered through (it holds the flow, faces the callee's network, and its NAT pinhole or
        connection is the way in). Its address toward the callee comes from the binding (the listening points,
        localnets and external addresses it registered with: location.proto Route fields 9-11); a binding without
        them, or without a listening point of the hop's transport, is sent from here (a flow still through its
        EdgePort: the EdgePort then names this one's address)."""
        ref = branch.next_hop.edge_port_ref
        route = branch.route
        if not ref or ref == msg.edge_port_ref or not msg.edge_port_ref or route is None or not route.listening_points:
            return None
        hop = branch.next_hop
        try:
            interface = edge_interface(hop.host, hop.transport,
                                       listening_points=[Interface.of(lp) for lp in route.listening_points],
                                       localnets=route.localnets, external_addrs=route.external_addrs)
        except NoInterface:
            return None
        return SendingEdge(ref, edge_tag(ref), interface)

    def _dialog_token(self, received: Request, out: Request, forward: Forward, sender: Interface | None,
                      sending: list[SendingEdge], own_tag: str) -> str:
        """The `rrk` token of the dialog this request sets up (`dialogs.py`): Call-ID, the caller's From tag,
        and the hops each side's in-dialog requests may go to.

        Caller side (the callee's requests go there): the packet source of this request; its Contact (after the
        `.invalid` fix) and the nearest upstream Record-Route only when they name that same source address (a
        client-written address elsewhere, e.g. a trunk's, must not become a place the dialog may send to); the
        Trunk a call from the PSTN came from. Callee side: every next hop chosen (failover and forks included),
        the Request-URI sent to each when it names that hop's address, the Trunk of a PSTN call. Across EdgePorts
        (``sending``), this EdgePort on the caller side and each sending one on the callee side (first: they must
        never be cut off by `MAX_HOPS`)."""
        tokens = self.dialogs
        caller: list[bytes] = []
        callee: list[bytes] = []
        if sending:
            caller.append(tokens.edge_id(own_tag))
            callee.extend(tokens.edge_id(s.tag) for s in sending)
        if sender is not None:
            caller.append(tokens.hop_id(sender.host, sender.port))
            source = host_key(sender.host)
            try:
                written = [c.uri for c in out.contacts[:1] if not c.wildcard and c.uri.is_sip]
                written += [rr.uri for rr in received.record_routes[:1] if rr.uri.is_sip]
            except ParseError:  # an unreadable Contact/Record-Route: only the packet source is a hop
                written = []
            for uri in written:
                hop = next_hop_of(uri)
                if host_key(hop.host) == source:
                    caller.append(tokens.hop_id(hop.host, hop.port))
        if forward.caller_trunk:
            caller.append(tokens.trunk_id(forward.caller_trunk))
        targets = [(forward.next_hop, forward.request_uri), *forward.alternatives,
                   *((branch.next_hop, branch.request_uri) for branch in forward.branches)]
        for hop, uri in targets:
            callee.append(tokens.hop_id(hop.host, hop.port))
            if uri is not None and uri.is_sip:
                named = next_hop_of(uri)
                if host_key(named.host) == host_key(hop.host):
                    callee.append(tokens.hop_id(named.host, named.port))
        if forward.callee_trunk:
            callee.append(tokens.trunk_id(forward.callee_trunk))
        from_tag = out.from_.tag if out.from_ is not None else None
        return tokens.issue(out.call_id or "", from_tag or "", caller=caller[:MAX_HOPS],
                            callee=list(dict.fromkeys(callee))[:MAX_HOPS],
                            caller_trusted=forward.caller_trusted, callee_trusted=forward.callee_trusted)

    def _own_realms(self, index: ConnectIndex) -> frozenset[str]:
        """Every realm Connect challenges in: Domain URIs, trunk inbound URIs and the default realm."""
        if self._realms_of is not index:
            realms = {d.domain_uri for d in index.resources.domains}
            realms.update(t.inbound.uri for t in index.resources.trunks if t.inbound is not None)
            realms.add(self.default_realm)
            self._realms, self._realms_of = frozenset(realms), index
        return self._realms

    def _request_uri(self, uri: URI, hop: NextHop, route: location_pb2.Route | None) -> URI:
        if hop.flow and self.flow_request_uri == "source" and route is not None:
            # Routr-compatible: the Contact's user at the flow's address (routr.md §3.5 fixRequestURI)
            uri = uri.copy()
            uri.host, uri.port = hop.host, hop.port
            if hop.transport != "UDP":
                uri.params["transport"] = hop.transport.lower()
        return uri
