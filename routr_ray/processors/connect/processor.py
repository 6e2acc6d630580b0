"""ConnectProcessor: Routr's Connect processor on the routr-ray SDK (issue 6; routr.md §3).

`process(MessageRequest) -> MessageResponse` (and `process_batch`) come from `routr_ray.processors.sdk`.
The decision (answer or forward where) comes from `Registrar` and `Router` as plain data; this module turns
it into the message the EdgePort sends, with the SDK alterations (routr.md §3.6):

forwarded request: leading own Route values removed (initial requests: every Route, we chose the target) →
Max-Forwards − 1 (483 at 0) → Authorization/Proxy-Authorization for our realms removed → `.invalid` Contact
fixed to the packet source → Request-URI := chosen Contact / trunk URI → identity, internal and DOD headers
replaced → own Via (no branch) → Record-Route with the dialog token `rrk` (two with `r2=on` when the two sides
use different interfaces; see `dialogs.py`) for dialog-creating requests → `X-Call-Direction`.

Where to send it travels in `MessageResponse.metadata` (keys `NEXT_HOP_*` below): the Request-URI names the
callee's Contact, which for a flow (see `targets.py`) is not the address to send to.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from routr_ray.config import Resources
from routr_ray.location.ops import LocationClient
from routr_ray.processors.alterations import (
    Interface,
    OwnAddresses,
    add_record_route,
    add_self_via,
    decrease_max_forwards,
    fix_invalid_contact,
    remove_authorization,
    remove_own_routes,
    remove_top_via,
    set_request_uri,
)
from routr_ray.processors.connect.access import Access, Principal
from routr_ray.processors.connect.auth import DigestGate, FailureTracker
from routr_ray.processors.connect.decisions import Decision, Forward, NextHop, Reply
from routr_ray.processors.connect.dialogs import TOKEN_PARAM, DialogTokens
from routr_ray.processors.connect.headers import INTERNAL_HEADERS
from routr_ray.processors.connect.registrar import DEFAULT_EXPIRES, ExpiresPolicy, Registrar, source_of
from routr_ray.processors.connect.resources_index import ConnectIndex, ResourceSource, StaticResources
from routr_ray.processors.connect.router import DEFAULT_REALM, Router, peer_realm
from routr_ray.processors.sdk import Context, Processor
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip.digest import DigestAlgorithm, DigestAuthenticator
from routr_ray.sip.fields import NameAddr
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI, format_host

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

NEXT_HOP_KEY = "routr-ray.next-hop"
"""`sip:host:port;transport=x`: the address to send the forwarded request to."""
NEXT_HOP_FLOW_KEY = "routr-ray.next-hop.flow"
"""`"true"`: send over the connection/flow the callee registered on (it cannot accept a new one)."""
NEXT_HOP_EDGE_KEY = "routr-ray.next-hop.edge-port-ref"
"""The EdgePort the callee registered through (may differ from the ingress one)."""
FAILOVER_KEY = "routr-ray.failover"
"""Further Request-URIs (comma-separated) to try in order on 503/408/timeout (trunk URIs)."""
DIRECTION_KEY = "routr-ray.call-direction"

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
        clock=time.time,  # type: ignore[no-untyped-def]
    ) -> None:
        self.source: ResourceSource = StaticResources(resources) if isinstance(resources, Resources) else resources
        self._index: ConnectIndex | None = None
        self._realms: frozenset[str] = frozenset()
        self._realms_of: ConnectIndex | None = None
        self.location = location
        digest = DigestAuthenticator(nonce_key, nonce_ttl=nonce_ttl, algorithms=tuple(algorithms))
        self.access = Access(DigestGate(digest, always_401=always_401, clock=clock), failures or FailureTracker())
        self.registrar = Registrar(location, clock=clock)
        self.dialogs = DialogTokens(nonce_key)
        self.default_realm = default_realm
        self.default_max_contacts = default_max_contacts
        self.router = Router(location, self.access, self.dialogs, default_realm=default_realm)
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
        decision = await self.decide(request, ctx.request)
        if isinstance(decision, Reply):
            return ctx.respond(decision.status, decision.reason, decision.headers)
        return self.render(ctx, request, decision)

    def handle_response(self, ctx: Context) -> MessageResponse:
        """RFC 3261 §16.7 step 3: our Via off the top; a WebRTC callee's `.invalid` Contact made reachable."""
        response = remove_top_via(ctx.message)
        response = fix_invalid_contact(response, Interface.of(ctx.request.sender) if ctx.request.HasField("sender")
                                       else None)
        return ctx.forward(response)

    # ---- decision -------------------------------------------------------------------------------

    async def decide(self, request: Request, msg: MessageRequest) -> Decision:
        if request.request_uri.scheme not in _URI_SCHEMES:  # RFC 3261 §16.3 step 2
            return Reply(416)
        index = self.index
        method = request.method.upper()
        if method == "REGISTER":
            unsupported = unsupported_options(request)
            if unsupported:  # RFC 3261 §8.2.2.3: Connect is the UAS of a REGISTER (the registrar)
                return Reply(420, None, (("Unsupported", ", ".join(unsupported)),))
            return await self.register(index, request, msg)
        in_dialog = request.to is not None and request.to.tag is not None
        if method == "ACK" or in_dialog:
            routed = self.router.route_in_dialog(request, msg)
            if routed is not None:
                return routed
            if method == "ACK":  # not of a dialog we route, and never challenged: dropped (SDK)
                return Reply(403, "Forbidden (ACK not routed through this server)")
            # no valid dialog token: an initial request in disguise, authenticated and routed as one
        if method == "CANCEL":  # hop by hop; if it reaches us, it follows its INVITE without a challenge
            return await self.router.route_initial(index, request, msg, authenticate=False)
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
        denied = self.access.check(request, source, principal, OwnAddresses.of_request(msg))
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

    def _max_contacts(self, configured: int) -> int:
        return configured if configured > 0 else self.default_max_contacts

    # ---- rendering ------------------------------------------------------------------------------

    def render(self, ctx: Context, request: Request, forward: Forward) -> MessageResponse:
        msg = ctx.request
        sender = Interface.of(msg.sender) if msg.HasField("sender") else None
        out: Request = remove_own_routes(request, OwnAddresses.of_request(msg))
        if not forward.in_dialog:
            out.headers.remove("Route")  # we chose the target: a client's preloaded route set is not followed
        out = decrease_max_forwards(out)
        if not forward.in_dialog:
            # RFC 3261 §22.3: only credentials for our realms; others answer a challenge further on
            out = remove_authorization(out, realms=self._own_realms(self.index))
        out = fix_invalid_contact(out, sender)
        hop = forward.next_hop
        if forward.request_uri is not None:
            out = set_request_uri(out, self._request_uri(forward))
        for name in (*INTERNAL_HEADERS, *forward.remove_headers):
            out.headers.remove(name)
        for name, value in forward.add_headers:
            out.headers.add(name, value)
        if forward.set_from is not None and out.from_ is not None:
            display, uri = forward.set_from
            anonymous = NameAddr(uri, display, dict(out.from_.params))
            out.headers.set("From", str(anonymous))
        target = ctx.edge_interface(hop.host, hop.transport)
        out = add_self_via(out, target)
        if not forward.in_dialog and out.method.upper() in _RECORD_ROUTE_METHODS:
            origin = ctx.edge_interface(sender.host, sender.transport) if sender is not None else target
            out = add_record_route(out, origin, target, params=((TOKEN_PARAM, self.dialogs.for_initial(out)),))
        metadata = {NEXT_HOP_KEY: hop_uri(hop), DIRECTION_KEY: forward.direction}
        if not forward.in_dialog:
            out.headers.add("X-Call-Direction", forward.direction)
        if hop.flow:
            metadata[NEXT_HOP_FLOW_KEY] = "true"
        if hop.edge_port_ref:
            metadata[NEXT_HOP_EDGE_KEY] = hop.edge_port_ref
        if forward.alternatives:
            metadata[FAILOVER_KEY] = ", ".join(str(uri) for _, uri in forward.alternatives)
        metadata.update(forward.metadata)
        return ctx.forward(out, metadata)

    def _own_realms(self, index: ConnectIndex) -> frozenset[str]:
        """Every realm Connect challenges in: Domain URIs, trunk inbound URIs and the default realm."""
        if self._realms_of is not index:
            realms = {d.domain_uri for d in index.resources.domains}
            realms.update(t.inbound.uri for t in index.resources.trunks if t.inbound is not None)
            realms.add(self.default_realm)
            self._realms, self._realms_of = frozenset(realms), index
        return self._realms

    def _request_uri(self, forward: Forward) -> URI:
        uri = forward.request_uri
        assert uri is not None
        hop = forward.next_hop
        if hop.flow and self.flow_request_uri == "source" and forward.route is not None:
            # Routr-compatible: the Contact's user at the flow's address (routr.md §3.5 fixRequestURI)
            uri = uri.copy()
            uri.host, uri.port = hop.host, hop.port
            if hop.transport != "UDP":
                uri.params["transport"] = hop.transport.lower()
        return uri
