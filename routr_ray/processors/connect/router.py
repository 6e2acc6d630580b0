"""Routing of requests other than REGISTER (issue 6 item 5; routr.md §3.3-§3.5, minus the §12 bugs).

Classification, first match wins:

1. Request-URI host is a Trunk's `inbound.uri`, or the Request-URI carries the `rtk` token of a Trunk we
   register (`trunks/contact_token.py`: a call to our registered GIN Contact) → **from-pstn** (Number by
   Request-URI user, else To user; the trunk's ACL and/or inbound credentials).
2. From names an Agent of one of our Domains → authenticate it (Domain ACL, digest in the Domain's realm),
   then by the Request-URI: an Agent of the same Domain → **agent-to-agent** (404 unknown user, 480 not
   registered, 403 another Domain); a Peer (`aor` or username) → **agent-to-peer**; otherwise the Domain's
   `egressPolicies` → **agent-to-pstn** (no policy: 404 for a user of our domain, 403 elsewhere).
3. From names a Peer (username, or the digest username of its credentials) → authenticate it (Peer ACL,
   digest) → an Agent → **peer-to-agent**; anything else → **peer-to-pstn** by `X-DOD-Number`.
4. Request-URI user is one of our Numbers and the Request-URI host is ours (a Domain or our address) →
   **from-pstn** through the Number's trunk.
5. From claims one of our Domains with an unknown user → the same challenge a known user gets.
6. Anything else → 403: never an open relay.

With a ConnectTokens config, a request carrying ``X-Connect-Token`` is judged by its token alone, before all of
the above (``web_agents.py``: the From AOR and domain must be the token's, the method in its ``allowedMethods``;
403, never a challenge): a **web agent** (Routr's ephemeral agent, routr.md §3.3). Its calls go to the Peer named by
the token's ``aorLink``, else by the Request-URI to an Agent, a Peer, or another web agent of the token's Domain;
never to the PSTN. Agents and Peers reach a web agent (an AOR registered with a token) by its AOR when it is no
Agent and no Peer, before any egress policy.

Agents and Peers are authenticated for every out-of-dialog request (INVITE, MESSAGE, SUBSCRIBE, PUBLISH,
REFER, OPTIONS, ...), agent-to-peer included. CANCEL never reaches `route_initial` (the processor answers it
481, see `processor.py`). In-dialog requests are routed by their Route set when its first entry is ours with a
dialog token (`route_in_dialog`, `dialogs.py`): a token that does not verify, has expired, or does not allow the
request's next hop gets 403; without a token they are initial requests.

Identity (RFC 3325 trust domain, `headers.py`): P-Preferred-Identity never leaves Connect; P-Asserted-Identity and
Remote-Party-ID are kept only from a Peer or Trunk with `trustAssertedIdentity` (a Trunk only when the request
proved it came from the trunk: its ACL's allow list or its inbound credentials), and then not toward an Agent
when the request asks `Privacy: id` (RFC 3325 §7); toward the PSTN Connect writes its own (the Number).
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from functools import lru_cache

from routr_ray.config.resources import Agent, Domain, Forking, Number, Peer, Privacy, Trunk, TrunkUri
from routr_ray.location.errors import LocationError
from routr_ray.location.ops import LocationClient
from routr_ray.processors.alterations import OwnAddresses
from routr_ray.processors.connect.access import Access, Principal
from routr_ray.processors.connect.acl import acl_allows, ip_of
from routr_ray.processors.connect.decisions import Decision, Direction, Forward, NextHop, Reply
from routr_ray.processors.connect.dialogs import (
    EDGE_PARAM,
    TOKEN_PARAM,
    DialogToken,
    DialogTokens,
    TokenStatus,
    host_key,
)
from routr_ray.processors.connect.forking import branches_of
from routr_ray.processors.connect.headers import (
    ANONYMOUS_DISPLAY,
    ANONYMOUS_FROM_URI,
    DOD_HEADERS,
    IDENTITY_HEADERS,
    identity_headers_to_remove,
    is_private,
    pstn_identity_headers,
)
from routr_ray.processors.connect.registrar import location_failure, source_of
from routr_ray.processors.connect.resources_index import ConnectIndex
from routr_ray.processors.connect.targets import default_port, target_of
from routr_ray.processors.connect.uri_format import request_user
from routr_ray.processors.connect.web_agents import WebAgentGate, token_of
from routr_ray.proto.gen import location_pb2, processor_pb2
from routr_ray.sip.digest import DigestParseError, find_credentials
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI
from routr_ray.trunks.contact_token import TOKEN_PARAM as TRUNK_TOKEN_PARAM
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.util.edge_tag import edge_tag, is_edge_tag
from routr_ray.util.rfc2782 import weighted_order
from routr_ray.util.server_health import HealthView

# Read by the EdgePort (routr_ray/edge/directives.py keeps a copy): base64(username:password) of the trunk's
# outbound credentials, for answering the trunk's digest challenges.
GATEWAY_AUTH_KEY = "routr-ray.gateway-auth"

Backend = location_pb2.FindRoutesRequest.Backend
_INVITE = processor_pb2.Method.Value("INVITE")
NOT_OURS = Reply(403, "Forbidden (not a destination served here)")


@lru_cache(maxsize=512)
def _compiled(rule: str) -> re.Pattern[str] | None:
    try:
        return re.compile(rule)
    except re.error:
        return None


def dialled_user(uri: URI) -> str | None:
    """The user a Request-URI dials: the user part of sip:/sips:, the number of tel:."""
    if uri.is_sip:
        return uri.user_unescaped
    if uri.scheme == "tel":
        return uri.opaque
    return None


def ordered_trunk_uris(trunk: Trunk, rng: random.Random | None = None,
                       down: Callable[[TrunkUri], bool] | None = None) -> list[TrunkUri]:
    """Enabled outbound URIs for one call: lowest `priority` first; within a priority a random order weighted by
    `weight` (RFC 2782, `util/rfc2782.py`: weights 3 and 1 share the calls 3:1). The first is the next hop, the
    rest are failover targets the EdgePort tries on 503/408/timeout. Routr only ever uses `uris[0]` (routr.md
    §3.5). `down`: URIs that failed their OPTIONS keepalive or are held down after a failed call
    (`util/server_health.py`) come after all the others, in their order: tried only when nothing else is left."""
    if trunk.outbound is None:
        return []
    enabled = [u for u in trunk.outbound.uris if u.enabled]
    ordered = weighted_order(enabled, priority=lambda u: u.priority, weight=lambda u: u.weight, rng=rng)
    if down is None or len(ordered) < 2:
        return ordered
    up: list[TrunkUri] = []
    skipped: list[TrunkUri] = []
    for uri in ordered:
        (skipped if down(uri) else up).append(uri)
    return up + skipped


def trunk_request_uri(dialled: str, uri: TrunkUri, *, phone: bool = False) -> tuple[NextHop, URI]:
    """The next hop and Request-URI of a call to ``dialled`` through one trunk URI; ``phone``: the user part is a
    telephone number (``uri_format.py``), marked ``;user=phone`` (RFC 3261 §19.1.6)."""
    transport = uri.transport.upper()
    request_uri = URI("sip", dialled, uri.host, uri.port)
    if phone:
        request_uri.params["user"] = "phone"
    if transport != "UDP":
        request_uri.params["transport"] = transport.lower()
    return NextHop(uri.host, uri.port or default_port(transport), transport), request_uri


def next_hop_of(uri: URI) -> NextHop:
    transport = (uri.transport or ("tls" if uri.is_secure else "udp")).upper()
    return NextHop(uri.host, uri.port or default_port(transport, uri.is_secure), transport,
                   flow=transport in ("TCP", "TLS", "WS", "WSS"))


DEFAULT_REALM = "routr"
"""Realm of a Peer when the request names none of our Domains (never taken from the client's request)."""


class Router:
    def __init__(self, location: LocationClient, access: Access, tokens: DialogTokens, *,
                 default_realm: str = DEFAULT_REALM, trunk_tokens: TrunkContactTokens | None = None,
                 rng: random.Random | None = None, web_agents: WebAgentGate | None = None,
                 health: HealthView | None = None) -> None:
        self.location = location
        self.access = access
        self.tokens = tokens
        self.default_realm = default_realm
        self._trunk_ids: dict[bytes, Trunk] = {}
        self._trunk_ids_of: ConnectIndex | None = None
        self.trunk_tokens = trunk_tokens
        self.rng = rng or random.Random()
        self.web_agents = web_agents  # X-Connect-Token callers (web_agents.py); None: the header is ignored
        self.health = health  # the cluster's server health (keepalive, hold-downs): trunk URIs and peer bindings

    # ---- entry points ---------------------------------------------------------------------------

    async def route_initial(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest
    ) -> Decision:
        """An out-of-dialog request (never a CANCEL): who sends it, authenticated, and where it goes."""
        decision = await self._classify(index, request, msg)
        if isinstance(decision, Forward):
            decision.remove_headers.extend(identity_headers_to_remove(
                request, sender_trusted=decision.caller_trusted, receiver_trusted=decision.callee_trusted))
        return decision

    async def _classify(self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest) -> Decision:
        ruri = request.request_uri
        from_uri = request.from_.uri if request.from_ is not None else None
        source = source_of(request, msg)[0]
        callee_user = dialled_user(ruri)
        own = OwnAddresses.of_request(msg)
        if self.web_agents is not None and token_of(request):
            return await self._from_web_agent(index, request, msg, from_uri, source, own)

        trunk = index.trunk_by_inbound_uri(ruri.host) if ruri.is_sip else None
        if trunk is not None:
            return await self._from_pstn(index, request, msg, source, trunk, index.number(callee_user))
        trunk = self._registered_trunk(index, ruri)
        if trunk is not None:  # a call to the Contact we registered for this trunk (GIN: the DID as user part)
            to_user = dialled_user(request.to.uri) if request.to is not None else None
            number = index.number(callee_user) or index.number(to_user)
            return await self._from_pstn(index, request, msg, source, trunk, number)

        caller_domain = index.domain(from_uri.host) if from_uri is not None and from_uri.is_sip else None
        agent = index.agent(from_uri.user, caller_domain.domain_uri) if caller_domain and from_uri else None
        if agent is not None and agent.enabled and caller_domain is not None:
            denied = self.access.check(request, source, self._agent_principal(index, agent, caller_domain), msg)
            if denied is not None:
                return denied
            return await self._from_agent(index, request, msg, agent, caller_domain, own)

        peer = self._peer_caller(index, request, from_uri)
        if peer is not None:
            denied = self.access.check(request, source, self._peer_principal(index, peer, request), msg)
            if denied is not None:
                return denied
            decision = await self._from_peer(index, request, msg, peer, own)
            if isinstance(decision, Forward):
                decision.caller_trusted = peer.trust_asserted_identity
            return decision

        number = index.number(callee_user)
        if number is not None and (index.domain(ruri.host) is not None or self._names_us(own, ruri.host)):
            trunk = index.trunk(number.trunk_ref)
            if trunk is not None:
                return await self._from_pstn(index, request, msg, source, trunk, number)

        if caller_domain is not None:  # an unknown user of ours: the usual challenge
            denied = self.access.check(
                request, source, Principal(caller_domain.domain_uri, None, self._domain_acl(index, caller_domain),
                                           known=False), msg
            )
            return denied or NOT_OURS
        return NOT_OURS

    # ---- principals -----------------------------------------------------------------------------

    @staticmethod
    def _domain_acl(index: ConnectIndex, domain: Domain):  # type: ignore[no-untyped-def]
        return index.acl(domain.access_control_list_ref)

    def _agent_principal(self, index: ConnectIndex, agent: Agent, domain: Domain) -> Principal:
        return Principal(domain.domain_uri, index.credentials(agent.credentials_ref), self._domain_acl(index, domain))

    def _peer_principal(self, index: ConnectIndex, peer: Peer, request: Request) -> Principal:
        return Principal(peer_realm(index, request, self.default_realm), index.credentials(peer.credentials_ref),
                         index.acl(peer.access_control_list_ref))

    @staticmethod
    def _peer_caller(index: ConnectIndex, request: Request, from_uri: URI | None) -> Peer | None:
        peer = index.peer_by_username(from_uri.user) if from_uri is not None and from_uri.is_sip else None
        if peer is None:
            values = request.headers.get_all("Authorization") + request.headers.get_all("Proxy-Authorization")
            if values:
                try:
                    creds = find_credentials(values, "")
                except DigestParseError:
                    creds = None
                if creds is not None:
                    peer = index.peer_by_credentials_username(creds.username)
        return peer if peer is not None and peer.enabled else None

    def _registered_trunk(self, index: ConnectIndex, ruri: URI) -> Trunk | None:
        """The trunk whose registration token (`rtk`) the Request-URI carries (never a client's claim: the token
        is an HMAC under our key, `trunks/contact_token.py`), if that trunk registers."""
        token = ruri.params.get(TRUNK_TOKEN_PARAM) if ruri.is_sip and self.trunk_tokens is not None else None
        if not token:
            return None
        assert self.trunk_tokens is not None
        for trunk in index.resources.trunks:
            if (trunk.outbound is not None and trunk.outbound.send_register
                    and self.trunk_tokens.proves(trunk.ref, token)):
                return trunk
        return None

    @staticmethod
    def _names_us(own: OwnAddresses, host: str) -> bool:
        ip = ip_of(host)
        return (str(ip) if ip is not None else host.lower()) in own.hosts

    # ---- directions -----------------------------------------------------------------------------

    async def _from_agent(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest,
        agent: Agent, domain: Domain, own: OwnAddresses,
    ) -> Decision:
        ruri = request.request_uri
        user = dialled_user(ruri)
        callee_domain = None
        callee = None
        if ruri.is_sip:
            callee_domain = index.domain(ruri.host)
            if callee_domain is None and self._names_us(own, ruri.host):
                callee_domain = domain  # dialled at our address: the caller's domain
        if callee_domain is not None and user:
            callee = index.agent(user, callee_domain.domain_uri)
            if callee is not None and callee.enabled:
                if callee_domain.ref != domain.ref:
                    return Reply(403, "Forbidden (calls between domains are not allowed)")
                aor = f"sip:{callee.username}@{callee_domain.domain_uri}"
                return await self._to_aor(Direction.AGENT_TO_AGENT, aor, msg, None, forking=callee.forking)
        peer = None
        if ruri.is_sip:
            peer = index.peer_by_aor(ruri.aor()) or (index.peer_by_username(user) if callee_domain else None)
        if peer is not None and peer.enabled:
            return await self._to_peer(Direction.AGENT_TO_PEER, peer, msg, "")
        if callee_domain is not None and callee_domain.ref == domain.ref and user and callee is None:
            web = await self._to_web_agent(Direction.AGENT_TO_AGENT, f"sip:{user}@{domain.domain_uri}", msg)
            if web is not None:
                return web
        if user:
            for policy in domain.egress_policies:
                pattern = _compiled(policy.rule)
                if pattern is not None and pattern.search(user):
                    number = index.number_by_ref(policy.number_ref)
                    if number is None:
                        continue
                    private = agent.privacy is Privacy.PRIVATE
                    display = request.from_.display_name if request.from_ is not None else None
                    return self._to_pstn(Direction.AGENT_TO_PSTN, index, request, number, user, private, display)
        if callee_domain is not None:
            return Reply(404)
        return Reply(403, "Forbidden (no egress policy matches)")

    async def _from_peer(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest, peer: Peer,
        own: OwnAddresses,
    ) -> Decision:
        ruri = request.request_uri
        user = dialled_user(ruri)
        if ruri.is_sip and user:
            domain = index.domain(ruri.host)
            callee = index.agent(user, domain.domain_uri) if domain is not None else None
            if callee is not None and callee.enabled and domain is not None:
                aor = f"sip:{callee.username}@{domain.domain_uri}"
                return await self._to_aor(Direction.PEER_TO_AGENT, aor, msg, None, forking=callee.forking)
            if callee is None and domain is not None:
                web = await self._to_web_agent(Direction.PEER_TO_AGENT, f"sip:{user}@{domain.domain_uri}", msg)
                if web is not None:
                    return web
        dod = (request.headers.get("X-DOD-Number") or "").strip()
        if not dod:
            return Reply(400, "Bad Request (missing or empty X-DOD-Number header)")
        number = index.number(dod)
        if number is None:
            return Reply(404, "Not Found (no Number for X-DOD-Number)")
        private = is_private(request.headers.get("X-DOD-Privacy"))
        return self._to_pstn(Direction.PEER_TO_PSTN, index, request, number, user or dod, private, None)

    async def _from_pstn(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest, source: str,
        trunk: Trunk, number: Number | None,
    ) -> Decision:
        inbound = trunk.inbound
        acl = index.acl(inbound.access_control_list_ref) if inbound else None
        if not acl_allows(acl, source):
            return Reply(403, "Forbidden (source address not allowed)")
        creds = index.credentials(inbound.credentials_ref) if inbound else None
        if creds is not None:
            realm = inbound.uri if inbound else request.request_uri.host
            denied = self.access.check(request, source, Principal(realm, creds, None), msg)
            if denied is not None:
                return denied
        # it proved it is the trunk (digest, or an allow list naming its networks): its identity may be trusted
        proven = creds is not None or (acl is not None and bool(acl.allow))
        if number is None:
            return Reply(404)
        if number.trunk_ref != trunk.ref:
            return Reply(403, "Forbidden (number does not belong to this trunk)")
        if not number.aor_link:
            return Reply(404, "Not Found (number has no aorLink)")
        affinity = ""
        if number.session_affinity_header:
            affinity = (request.headers.get(number.session_affinity_header) or "").strip()
        peer = index.peer_by_aor(number.aor_link)
        if peer is not None:
            decision = await self._to_peer(Direction.FROM_PSTN, peer, msg, affinity, aor=number.aor_link)
        else:
            decision = await self._to_aor(Direction.FROM_PSTN, number.aor_link, msg, None, affinity,
                                          forking=Forking())
        if isinstance(decision, Forward):
            decision.add_headers.extend((h.name, h.value) for h in number.extra_headers)
            # the trunk's addresses become the caller side of the dialog only when the trunk proved it sent this:
            # anyone may call a Number dialled at our domain, and must not gain a way to the trunk by it
            decision.caller_trunk = trunk.ref if proven else None
            decision.caller_trusted = proven and trunk.trust_asserted_identity
        return decision

    async def _from_web_agent(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest, from_uri: URI | None,
        source: str, own: OwnAddresses,
    ) -> Decision:
        """A request with an ``X-Connect-Token`` (routr.md §3.3 ephemeral agent): admitted by its token for its
        From AOR (``web_agents.py``), then to the Peer the token's ``aorLink`` names (Routr), else by the
        Request-URI: an Agent of the token's Domain, a Peer, or another web agent of that Domain (its bindings).
        Never to the PSTN: a web agent has no egress (a Peer such as a PBX can give it one)."""
        assert self.web_agents is not None
        if from_uri is None or not from_uri.is_sip or not from_uri.user:
            return Reply(403, "Forbidden (X-Connect-Token not accepted)")
        admitted = self.web_agents.admit(index, request, f"sip:{from_uri.user}@{from_uri.host}", source)
        if isinstance(admitted, Reply):
            return admitted
        domain = admitted.domain
        if admitted.claims.aor_link:
            linked = index.peer_by_aor(admitted.claims.aor_link)
            if linked is not None and linked.enabled:
                return await self._to_peer(Direction.AGENT_TO_PEER, linked, msg, "")
        ruri = request.request_uri
        user = dialled_user(ruri)
        callee_domain = None
        if ruri.is_sip:
            callee_domain = index.domain(ruri.host)
            if callee_domain is None and self._names_us(own, ruri.host):
                callee_domain = domain  # dialled at our address: the web agent's domain
        callee = None
        if callee_domain is not None and user:
            if callee_domain.ref != domain.ref:
                return Reply(403, "Forbidden (calls between domains are not allowed)")
            callee = index.agent(user, domain.domain_uri)
            if callee is not None and callee.enabled:
                return await self._to_aor(Direction.AGENT_TO_AGENT, f"sip:{callee.username}@{domain.domain_uri}",
                                          msg, None, forking=callee.forking)
        peer = None
        if ruri.is_sip:
            peer = index.peer_by_aor(ruri.aor()) or (index.peer_by_username(user) if callee_domain else None)
        if peer is not None and peer.enabled:
            return await self._to_peer(Direction.AGENT_TO_PEER, peer, msg, "")
        if callee_domain is not None and user and callee is None:  # another web agent, or nobody (480)
            return await self._to_aor(Direction.AGENT_TO_AGENT, f"sip:{user}@{domain.domain_uri}", msg, None,
                                      forking=Forking())
        if callee_domain is not None:
            return Reply(404)
        return Reply(403, "Forbidden (a web agent reaches only its domain's agents and peers)")

    async def _to_web_agent(self, direction: str, aor: str, msg: processor_pb2.MessageRequest) -> Decision | None:
        """A call to an AOR that is no Agent: a web agent's bindings (registered with a token) when web agents are
        on and it has any; None otherwise (the caller goes on: egress policies, X-DOD-Number)."""
        if self.web_agents is None:
            return None
        decision = await self._to_aor(direction, aor, msg, None, forking=Forking())
        return None if isinstance(decision, Reply) and decision.status == 480 else decision

    # ---- targets --------------------------------------------------------------------------------

    async def _to_peer(
        self, direction: str, peer: Peer, msg: processor_pb2.MessageRequest, affinity: str, aor: str | None = None
    ) -> Decision:
        balancing = peer.load_balancing
        backend = Backend(
            ref=peer.ref,
            with_session_affinity=balancing.with_session_affinity,
            algorithm=Backend.Algorithm.Value(balancing.algorithm.value),
        )
        avoid = self.health.down_contacts(peer.aor) if self.health is not None else ()
        decision = await self._to_aor(direction, aor or peer.aor, msg, backend, affinity, avoid=avoid)
        if isinstance(decision, Forward):
            decision.callee_trusted = peer.trust_asserted_identity
        return decision

    async def _to_aor(
        self, direction: str, aor: str, msg: processor_pb2.MessageRequest, backend: Backend | None,
        affinity: str = "", *, forking: Forking | None = None, avoid: tuple[str, ...] = (),
    ) -> Decision:
        """The backend's pick (peers); for an agent (`forking` given), every live binding as branches of an
        INVITE (`forking.py`: the agent's policy; the EdgePort rings them), the most recent one for other
        methods."""
        find = location_pb2.FindRoutesRequest(aor=aor, call_id=msg.ref, session_affinity_ref=affinity)
        if backend is not None:
            find.backend.CopyFrom(backend)
            find.avoid_contact_uris.extend(avoid)  # bindings down by keepalive: Location picks another first
        try:
            found = await self.location.find_routes(find)
        except LocationError as exc:
            return location_failure(exc)
        if not found.routes:
            return Reply(480)
        route = found.routes[0]
        if forking is not None and len(found.routes) > 1 and msg.method == _INVITE:
            branches, timeouts = branches_of(found.routes, forking)
            first = branches[0]
            return Forward(direction, first.next_hop, first.request_uri, route=first.route, branches=branches[1:],
                           group=first.group, group_timeouts=timeouts)
        hop, request_uri = target_of(route)
        return Forward(direction, hop, request_uri, route=route)

    def _to_pstn(
        self, direction: str, index: ConnectIndex, request: Request, number: Number, dialled: str,
        private: bool, display: str | None,
    ) -> Decision:
        trunk = index.trunk(number.trunk_ref)
        uris = ordered_trunk_uris(trunk, self.rng, self._uri_down) if trunk is not None else []
        if trunk is None or not uris:
            return Reply(503, "Service Unavailable (no trunk for this number)", (("Retry-After", "30"),))
        assert trunk.outbound is not None
        written = request_user(dialled, trunk.outbound.uri_format)
        if written is None:
            return Reply(484, "Address Incomplete (not an E.164 number, as this trunk requires)")
        user, phone = written
        hops = [trunk_request_uri(user, u, phone=phone) for u in uris]
        hop, request_uri = hops[0]
        metadata = {"routr-ray.trunk-ref": trunk.ref}
        credentials = index.credentials(trunk.outbound.credentials_ref) if trunk.outbound is not None else None
        if credentials is not None and request.method.upper() == "INVITE":
            # The EdgePort answers the trunk's 401/407 with these (Routr's X-Gateway-Auth, routr.md §5.6). Only
            # for an INVITE Connect authorised (every caller of `_to_pstn` was authenticated first) and that
            # goes to this trunk: never for a CANCEL (answered 481) or an in-dialog request.
            metadata[GATEWAY_AUTH_KEY] = base64.b64encode(
                f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
        forward = Forward(direction, hop, request_uri, alternatives=hops[1:], metadata=metadata,
                          callee_trunk=trunk.ref, callee_trusted=trunk.trust_asserted_identity)
        forward.remove_headers.extend(IDENTITY_HEADERS + DOD_HEADERS)
        forward.add_headers.extend(pstn_identity_headers(number.tel_url, hop.host, display_name=display,
                                                         private=private))
        if private:
            forward.set_from = (ANONYMOUS_DISPLAY, ANONYMOUS_FROM_URI.copy())
        return forward

    def _uri_down(self, uri: TrunkUri) -> bool:
        return self.health is not None and self.health.server_down(uri.transport, uri.host, uri.port)

    # ---- in-dialog ------------------------------------------------------------------------------

    def route_in_dialog(self, index: ConnectIndex, request: Request,
                        msg: processor_pb2.MessageRequest) -> Decision | None:
        """Loose routing (RFC 3261 §16.4, §16.6 step 6-7): drop the leading Route values naming us, then the
        next Route or else the Request-URI is the next hop. Only for a request whose first Route is ours and
        carries a dialog token (`dialogs.py`) that verifies for this dialog, has not expired and allows that next
        hop on the side the request goes to; a token that fails any of these gets 403. None when the first Route
        is not ours or has no token: the caller routes it as an initial request (authenticated, 403 for a
        destination not served here), never an open relay."""
        own = OwnAddresses.of_request(msg)
        own_tag = edge_tag(msg.edge_port_ref) if msg.edge_port_ref else ""
        routes = request.routes
        ruri = request.request_uri
        strict_upstream = (bool(routes) and ruri.is_sip and TOKEN_PARAM in ruri.params and own.names_us(ruri))
        if strict_upstream:
            # RFC 3261 §16.4: a strict router before us put our Record-Route URI into the Request-URI: the last
            # Route value is the real Request-URI, the others are the route set still to follow
            ours, final_uri, routes = ruri, routes[-1].uri, routes[:-1]
            leading_own = 0
        else:
            leading_own = 0
            for na in routes:
                params = na.uri.params
                # ours: by address, or an entry we wrote naming this EdgePort (its address as another side sees it)
                if not (own.names_us(na.uri)
                        or (own_tag and params.get(EDGE_PARAM) == own_tag and TOKEN_PARAM in params)):
                    break
                leading_own += 1
            if not leading_own or TOKEN_PARAM not in routes[0].uri.params:
                return None
            ours, final_uri = routes[0].uri, ruri
        token = self.tokens.read(request, ours.params.get(TOKEN_PARAM))
        if token.status is TokenStatus.INVALID:
            return Reply(403, "Forbidden (dialog token does not match this dialog)")
        if token.status is TokenStatus.EXPIRED:
            return Reply(403, "Forbidden (dialog token expired)")
        rest = routes[leading_own:]
        via_tag, via_address = "", None
        if rest and TOKEN_PARAM in rest[0].uri.params and rest[0].uri.params.get(EDGE_PARAM):
            # the entry of the dialog's other EdgePort (docs/distributed.md): the request goes on through it, to
            # the hop after it; only an EdgePort the token names for the side the request goes to
            entry = rest[0].uri
            via_tag = (entry.params.get(EDGE_PARAM) or "").lower()
            if not is_edge_tag(via_tag) or self.tokens.edge_id(via_tag) not in token.allowed_hops():
                return Reply(403, "Forbidden (next hop is not a party of this dialog)")
            entry_hop = next_hop_of(entry)
            via_address = (entry_hop.host.strip("[]"), entry_hop.port, entry_hop.transport)
            rest = rest[1:]
        if rest:
            target = rest[0].uri
        else:
            target = final_uri
            if not target.is_sip or own.names_us(target):
                return Reply(404, "Not Found (no next hop)")
        hop = next_hop_of(target)
        if not self._hop_allowed(index, token, hop):
            return Reply(403, "Forbidden (next hop is not a party of this dialog)")
        forward = Forward(Direction.IN_DIALOG, hop, final_uri if strict_upstream else None, in_dialog=True,
                          drop_last_route=strict_upstream, via_edge_tag=via_tag, via_address=via_address,
                          routes_used=len(routes) - len(rest))
        forward.remove_headers.extend(identity_headers_to_remove(
            request, sender_trusted=token.sender_trusted, receiver_trusted=token.receiver_trusted))
        return forward

    def _hop_allowed(self, index: ConnectIndex, token: DialogToken, hop: NextHop) -> bool:
        allowed = token.allowed_hops()
        if self.tokens.hop_id(hop.host, hop.port) in allowed:
            return True
        trunks = self._trunks_by_id(index)
        return any(trunk_admits(index, trunks[i], hop.host) for i in allowed if i in trunks)

    def _trunks_by_id(self, index: ConnectIndex) -> dict[bytes, Trunk]:
        if self._trunk_ids_of is not index:
            self._trunk_ids = {self.tokens.trunk_id(t.ref): t for t in index.resources.trunks}
            self._trunk_ids_of = index
        return self._trunk_ids


def trunk_admits(index: ConnectIndex, trunk: Trunk, host: str) -> bool:
    """`host` belongs to `trunk`: one of its outbound URI hosts (as written: a name or an address), or an address
    its inbound ACL's allow list names (a provider signals and answers from its networks, not always from the
    host we send to). Used for the next hops of a dialog with a trunk (a carrier's 2xx Contact or Record-Route
    often names another address than the one the INVITE went to)."""
    key = host_key(host)
    if trunk.outbound is not None and any(host_key(u.host) == key for u in trunk.outbound.uris):
        return True
    acl = index.acl(trunk.inbound.access_control_list_ref) if trunk.inbound is not None else None
    return acl is not None and bool(acl.allow) and ip_of(key) is not None and acl_allows(acl, key)


def peer_realm(index: ConnectIndex, request: Request, default: str = DEFAULT_REALM) -> str:
    """Realm for a Peer (not bound to a Domain): our Domain in the Request-URI or To, else `default` (the
    configured realm). Never a host the client wrote that is not one of our Domains (the nonce is bound to the
    realm; a client-chosen realm would let it pick the protection space)."""
    ruri = request.request_uri
    to_uri = request.to.uri if request.to is not None else None
    for host in (ruri.host if ruri.is_sip else "", to_uri.host if to_uri is not None and to_uri.is_sip else ""):
        domain = index.domain(host) if host else None
        if domain is not None:
            return domain.domain_uri
    return default
