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

Agents and Peers are authenticated for every out-of-dialog request (INVITE, MESSAGE, SUBSCRIBE, PUBLISH,
REFER, OPTIONS, ...), agent-to-peer included; CANCEL is routed like its INVITE without a challenge (it
cannot answer one, RFC 3261 §22.1); in-dialog requests are routed by their Route set when its first entry
is ours with a valid dialog token (`route_in_dialog`, `dialogs.py`), as initial requests otherwise.
"""

from __future__ import annotations

import base64
import random
import re
from functools import lru_cache

from routr_ray.config.resources import Agent, Domain, Number, Peer, Privacy, Trunk, TrunkUri
from routr_ray.location.errors import LocationError
from routr_ray.location.ops import LocationClient
from routr_ray.processors.alterations import OwnAddresses
from routr_ray.processors.connect.access import Access, Principal
from routr_ray.processors.connect.acl import acl_allows, ip_of
from routr_ray.processors.connect.decisions import Decision, Direction, Forward, NextHop, Reply
from routr_ray.processors.connect.dialogs import TOKEN_PARAM, DialogTokens
from routr_ray.processors.connect.headers import (
    ANONYMOUS_DISPLAY,
    ANONYMOUS_FROM_URI,
    DOD_HEADERS,
    IDENTITY_HEADERS,
    is_private,
    pstn_identity_headers,
)
from routr_ray.processors.connect.registrar import location_failure, source_of
from routr_ray.processors.connect.resources_index import ConnectIndex
from routr_ray.processors.connect.targets import default_port, target_of
from routr_ray.proto.gen import location_pb2, processor_pb2
from routr_ray.sip.digest import DigestParseError, find_credentials
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI
from routr_ray.trunks.contact_token import TOKEN_PARAM as TRUNK_TOKEN_PARAM
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.util.rfc2782 import weighted_order

# Read by the EdgePort (routr_ray/edge/directives.py keeps a copy): base64(username:password) of the trunk's
# outbound credentials, for answering the trunk's digest challenges.
GATEWAY_AUTH_KEY = "routr-ray.gateway-auth"

Backend = location_pb2.FindRoutesRequest.Backend
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


def ordered_trunk_uris(trunk: Trunk, rng: random.Random | None = None) -> list[TrunkUri]:
    """Enabled outbound URIs for one call: lowest `priority` first; within a priority a random order weighted by
    `weight` (RFC 2782, `util/rfc2782.py`: weights 3 and 1 share the calls 3:1). The first is the next hop, the
    rest are failover targets the EdgePort tries on 503/408/timeout. Routr only ever uses `uris[0]` (routr.md
    §3.5)."""
    if trunk.outbound is None:
        return []
    enabled = [u for u in trunk.outbound.uris if u.enabled]
    return weighted_order(enabled, priority=lambda u: u.priority, weight=lambda u: u.weight, rng=rng)


def trunk_request_uri(dialled: str, uri: TrunkUri) -> tuple[NextHop, URI]:
    transport = uri.transport.upper()
    request_uri = URI("sip", dialled, uri.host, uri.port)
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
                 rng: random.Random | None = None) -> None:
        self.location = location
        self.access = access
        self.tokens = tokens
        self.default_realm = default_realm
        self.trunk_tokens = trunk_tokens
        self.rng = rng or random.Random()

    # ---- entry points ---------------------------------------------------------------------------

    async def route_initial(
        self, index: ConnectIndex, request: Request, msg: processor_pb2.MessageRequest, *, authenticate: bool = True
    ) -> Decision:
        ruri = request.request_uri
        from_uri = request.from_.uri if request.from_ is not None else None
        source = source_of(request, msg)[0]
        callee_user = dialled_user(ruri)
        own = OwnAddresses.of_request(msg)

        trunk = index.trunk_by_inbound_uri(ruri.host) if ruri.is_sip else None
        if trunk is not None:
            return await self._from_pstn(index, request, msg, source, trunk, index.number(callee_user), authenticate)
        trunk = self._registered_trunk(index, ruri)
        if trunk is not None:  # a call to the Contact we registered for this trunk (GIN: the DID as user part)
            to_user = dialled_user(request.to.uri) if request.to is not None else None
            number = index.number(callee_user) or index.number(to_user)
            return await self._from_pstn(index, request, msg, source, trunk, number, authenticate)

        caller_domain = index.domain(from_uri.host) if from_uri is not None and from_uri.is_sip else None
        agent = index.agent(from_uri.user, caller_domain.domain_uri) if caller_domain and from_uri else None
        if agent is not None and agent.enabled and caller_domain is not None:
            if authenticate:
                denied = self.access.check(request, source, self._agent_principal(index, agent, caller_domain),
                                           own)
                if denied is not None:
                    return denied
            return await self._from_agent(index, request, msg, agent, caller_domain, own)

        peer = self._peer_caller(index, request, from_uri)
        if peer is not None:
            if authenticate:
                denied = self.access.check(request, source, self._peer_principal(index, peer, request, own), own)
                if denied is not None:
                    return denied
            return await self._from_peer(index, request, msg, peer, own)

        number = index.number(callee_user)
        if number is not None and (index.domain(ruri.host) is not None or self._names_us(own, ruri.host)):
            trunk = index.trunk(number.trunk_ref)
            if trunk is not None:
                return await self._from_pstn(index, request, msg, source, trunk, number, authenticate)

        if caller_domain is not None and authenticate:  # an unknown user of ours: the usual challenge
            denied = self.access.check(
                request, source, Principal(caller_domain.domain_uri, None, self._domain_acl(index, caller_domain),
                                           known=False), own
            )
            return denied or NOT_OURS
        return NOT_OURS

    # ---- principals -----------------------------------------------------------------------------

    @staticmethod
    def _domain_acl(index: ConnectIndex, domain: Domain):  # type: ignore[no-untyped-def]
        return index.acl(domain.access_control_list_ref)

    def _agent_principal(self, index: ConnectIndex, agent: Agent, domain: Domain) -> Principal:
        return Principal(domain.domain_uri, index.credentials(agent.credentials_ref), self._domain_acl(index, domain))

    def _peer_principal(self, index: ConnectIndex, peer: Peer, request: Request, own: OwnAddresses) -> Principal:
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
                return await self._to_aor(Direction.AGENT_TO_AGENT, aor, msg, None)
        peer = None
        if ruri.is_sip:
            peer = index.peer_by_aor(ruri.aor()) or (index.peer_by_username(user) if callee_domain else None)
        if peer is not None and peer.enabled:
            return await self._to_peer(Direction.AGENT_TO_PEER, peer, msg, "")
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
                return await self._to_aor(Direction.PEER_TO_AGENT, aor, msg, None)
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
        trunk: Trunk, number: Number | None, authenticate: bool,
    ) -> Decision:
        inbound = trunk.inbound
        acl = index.acl(inbound.access_control_list_ref) if inbound else None
        if not acl_allows(acl, source):
            return Reply(403, "Forbidden (source address not allowed)")
        creds = index.credentials(inbound.credentials_ref) if inbound else None
        if creds is not None and authenticate:
            realm = inbound.uri if inbound else request.request_uri.host
            denied = self.access.check(request, source, Principal(realm, creds, None), OwnAddresses.of_request(msg))
            if denied is not None:
                return denied
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
            decision = await self._to_aor(Direction.FROM_PSTN, number.aor_link, msg, None, affinity)
        if isinstance(decision, Forward):
            decision.add_headers.extend((h.name, h.value) for h in number.extra_headers)
        return decision

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
        return await self._to_aor(direction, aor or peer.aor, msg, backend, affinity)

    async def _to_aor(
        self, direction: str, aor: str, msg: processor_pb2.MessageRequest, backend: Backend | None,
        affinity: str = "",
    ) -> Decision:
        """The most recent live binding (agents), or the backend's pick (peers). Forking to every binding
        is the EdgePort's job later; until then the most recent binding wins."""
        find = location_pb2.FindRoutesRequest(aor=aor, call_id=msg.ref, session_affinity_ref=affinity)
        if backend is not None:
            find.backend.CopyFrom(backend)
        try:
            found = await self.location.find_routes(find)
        except LocationError as exc:
            return location_failure(exc)
        if not found.routes:
            return Reply(480)
        route = found.routes[0]
        hop, request_uri = target_of(route)
        return Forward(direction, hop, request_uri, route=route)

    def _to_pstn(
        self, direction: str, index: ConnectIndex, request: Request, number: Number, dialled: str,
        private: bool, display: str | None,
    ) -> Decision:
        trunk = index.trunk(number.trunk_ref)
        uris = ordered_trunk_uris(trunk, self.rng) if trunk is not None else []
        if trunk is None or not uris:
            return Reply(503, "Service Unavailable (no trunk for this number)", (("Retry-After", "30"),))
        hops = [trunk_request_uri(dialled, u) for u in uris]
        hop, request_uri = hops[0]
        metadata = {"routr-ray.trunk-ref": trunk.ref}
        credentials = index.credentials(trunk.outbound.credentials_ref) if trunk.outbound is not None else None
        if credentials is not None:
            # the EdgePort answers the trunk's 401/407 with these (Routr's X-Gateway-Auth, routr.md §5.6)
            metadata[GATEWAY_AUTH_KEY] = base64.b64encode(
                f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
        forward = Forward(direction, hop, request_uri, alternatives=hops[1:], metadata=metadata)
        forward.remove_headers.extend(IDENTITY_HEADERS + DOD_HEADERS)
        forward.add_headers.extend(pstn_identity_headers(number.tel_url, hop.host, display_name=display,
                                                         private=private))
        if private:
            forward.set_from = (ANONYMOUS_DISPLAY, ANONYMOUS_FROM_URI.copy())
        return forward

    # ---- in-dialog ------------------------------------------------------------------------------

    def route_in_dialog(self, request: Request, msg: processor_pb2.MessageRequest) -> Decision | None:
        """Loose routing (RFC 3261 §16.4, §16.6 step 6-7): drop the leading Route values naming us, then the
        next Route or else the Request-URI is the next hop. Only for a request whose first Route is ours and
        carries a valid dialog token (`dialogs.py`); None otherwise: the caller routes it as an initial
        request (authenticated, 403 for a destination not served here), never an open relay."""
        own = OwnAddresses.of_request(msg)
        routes = request.routes
        leading_own = 0
        for na in routes:
            if not own.names_us(na.uri):
                break
            leading_own += 1
        rest = routes[leading_own:]
        if not leading_own or not self.tokens.proves(request, routes[0].uri.params.get(TOKEN_PARAM)):
            return None
        if rest:
            target = rest[0].uri
        else:
            target = request.request_uri
            if not target.is_sip or own.names_us(target):
                return Reply(404, "Not Found (no next hop)")
        return Forward(Direction.IN_DIALOG, next_hop_of(target), None, in_dialog=True)


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
