"""Connect resources (routr.md §4): Agent, Peer, Domain, Number, Trunk, Credentials, AccessControlList.

Each builder turns one schema-valid document into a frozen dataclass and says which refs it holds and
which of its values must be unique, so that `resource_set` can check a whole directory at once.
Refs stay as strings on the dataclasses; `Resources` (resource_set.py) looks them up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias

from routr_ray.config.problems import Place
from routr_ray.config.values import IPNetwork, to_networks


class Privacy(StrEnum):
    NONE = "NONE"
    PRIVATE = "PRIVATE"  # RFC 3323 `Privacy: id` toward the callee


class BalancingAlgorithm(StrEnum):  # names as in location.proto
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_SESSIONS = "LEAST_SESSIONS"


@dataclass(frozen=True)
class Credentials:
    ref: str
    name: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class AccessControlList:
    ref: str
    name: str
    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class EgressPolicy:
    rule: str  # a regular expression matched against the dialled user; the first match wins
    number_ref: str


@dataclass(frozen=True)
class Domain:
    ref: str
    name: str
    domain_uri: str
    access_control_list_ref: str | None = None
    egress_policies: tuple[EgressPolicy, ...] = ()
    digest_algorithms: tuple[str, ...] = ()  # routr-ray: offered in this realm, preferred first; () = MD5


class ForkingMode(StrEnum):
    """How a call to an Agent rings its contacts (routr-ray extension; RFC 3261 §16.6)."""

    PARALLEL = "parallel"
    LATEST = "latest"
    SEQUENTIAL = "sequential"


@dataclass(frozen=True)
class Forking:
    mode: ForkingMode = ForkingMode.PARALLEL
    ring_timeout: float | None = None  # seconds per contact (sequential) or per q group (parallel)


@dataclass(frozen=True)
class Agent:
    ref: str
    name: str
    username: str
    domain_ref: str
    credentials_ref: str
    privacy: Privacy = Privacy.NONE
    max_contacts: int = -1  # -1 or 0: unlimited
    expires: int | None = None
    enabled: bool = True
    forking: Forking = Forking()


@dataclass(frozen=True)
class Keepalive:
    """routr-ray: OPTIONS pings of a Trunk's outbound URIs or a Peer's bindings, like Kamailio's dispatcher
    (docs/trunks.md "Keepalive"): a target that fails ``failures_before_down`` pings in a row is down (skipped
    while anything else is left) until it answers ``successes_before_up`` in a row; any final answer is one."""

    interval: float = 30.0  # seconds between two pings of one target
    failures_before_down: int = 2
    successes_before_up: int = 1
    timeout: float = 5.0  # seconds without a final answer: the ping failed


@dataclass(frozen=True)
class LoadBalancing:
    algorithm: BalancingAlgorithm = BalancingAlgorithm.ROUND_ROBIN
    with_session_affinity: bool = False


@dataclass(frozen=True)
class Peer:
    ref: str
    name: str
    username: str
    aor: str
    contact_addr: str | None = None
    credentials_ref: str | None = None
    access_control_list_ref: str | None = None
    load_balancing: LoadBalancing = LoadBalancing()
    max_contacts: int = -1
    expires: int | None = None
    enabled: bool = True
    trust_asserted_identity: bool = False  # routr-ray: keep its P-Asserted-Identity / Remote-Party-ID (RFC 3325)
    keepalive: Keepalive | None = None  # routr-ray: OPTIONS pings of its bindings


@dataclass(frozen=True)
class GeoInfo:
    city: str | None = None
    country: str | None = None
    country_iso_code: str | None = None


@dataclass(frozen=True)
class ExtraHeader:
    name: str
    value: str


@dataclass(frozen=True)
class Number:
    ref: str
    name: str
    tel_url: str
    trunk_ref: str | None = None
    aor_link: str | None = None
    session_affinity_header: str | None = None
    extra_headers: tuple[ExtraHeader, ...] = ()
    geo_info: GeoInfo | None = None


@dataclass(frozen=True)
class TrunkUri:
    host: str
    port: int
    transport: str  # lower case: udp, tcp, tls, sctp, ws, wss
    user: str | None = None
    priority: int = 0
    weight: int = 1
    enabled: bool = True


@dataclass(frozen=True)
class TrunkInbound:
    uri: str
    access_control_list_ref: str | None = None
    credentials_ref: str | None = None


class UriFormat(StrEnum):
    """How the dialled number is written in the Request-URI of a call out through a Trunk (routr-ray extension)."""

    DIALLED = "dialled"  # the user part as dialled
    E164 = "e164"  # ``+<digits>`` and ``;user=phone`` (RFC 3261 §19.1.6)


@dataclass(frozen=True)
class TrunkOutbound:
    uris: tuple[TrunkUri, ...]
    send_register: bool = False
    credentials_ref: str | None = None
    uri_format: UriFormat = UriFormat.DIALLED  # routr-ray
    keepalive: Keepalive | None = None  # routr-ray: OPTIONS pings of every enabled URI


@dataclass(frozen=True)
class Trunk:
    ref: str
    name: str
    inbound: TrunkInbound | None = None
    outbound: TrunkOutbound | None = None
    region: str | None = None
    trust_asserted_identity: bool = False  # routr-ray: keep the identity headers of calls it proves it sent


Resource: TypeAlias = Agent | Peer | Domain | Number | Trunk | Credentials | AccessControlList


@dataclass(frozen=True)
class Reference:
    """A ref held by a resource, where it was written, and the kind it must name."""

    place: Place
    ref: str
    target: type[Resource]


@dataclass(frozen=True)
class UniqueValue:
    """A value no two resources may share, e.g. a Domain's domainUri; `label` names it in messages."""

    place: Place
    label: str
    value: object


@dataclass
class Built:
    resource: Resource
    place: Place
    references: list[Reference] = field(default_factory=list)
    unique_values: list[UniqueValue] = field(default_factory=list)

    def refer(self, ref: str | None, target: type[Resource], *parts: str | int) -> None:
        if ref is not None:
            self.references.append(Reference(self.place.child(*parts), ref, target))

    def unique(self, label: str, value: object, *parts: str | int) -> None:
        self.unique_values.append(UniqueValue(self.place.child(*parts), label, value))


def _envelope(document: dict[str, Any]) -> tuple[str, str]:
    return document["ref"], document["metadata"]["name"]


def build_credentials(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    secret = document["spec"]["credentials"]
    return Built(Credentials(ref, name, secret["username"], secret["password"]), place)


def build_access_control_list(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    lists = document["spec"]["accessControlList"]
    acl = AccessControlList(
        ref, name, allow=to_networks(lists.get("allow")), deny=to_networks(lists.get("deny"))
    )
    return Built(acl, place)


def build_domain(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    spec = document["spec"]
    context = spec["context"]
    # Routr's schema puts accessControlListRef under spec.context, its samples and mapper under spec.
    acl_parts: tuple[str, ...] = ("spec", "accessControlListRef")
    if "accessControlListRef" not in spec and "accessControlListRef" in context:
        acl_parts = ("spec", "context", "accessControlListRef")
    acl_ref = spec.get("accessControlListRef", context.get("accessControlListRef"))
    policies = []
    for policy in context.get("egressPolicies", ()):
        policies.append(EgressPolicy(policy["rule"], policy["numberRef"]))  # the schema compiled the rule
    domain = Domain(ref, name, context["domainUri"], acl_ref, tuple(policies),
                    digest_algorithms=tuple(spec.get("digestAlgorithms", ())))
    built = Built(domain, place)
    built.refer(acl_ref, AccessControlList, *acl_parts)
    for index, policy in enumerate(domain.egress_policies):
        built.refer(policy.number_ref, Number, "spec", "context", "egressPolicies", index, "numberRef")
    built.unique("domainUri", domain.domain_uri.lower(), "spec", "context", "domainUri")
    return built


def build_agent(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    spec = document["spec"]
    agent = Agent(
        ref,
        name,
        username=spec["username"],
        domain_ref=spec["domainRef"],
        credentials_ref=spec["credentialsRef"],
        privacy=Privacy(spec.get("privacy", "NONE").upper()),
        max_contacts=int(spec.get("maxContacts", -1)),
        expires=spec.get("expires"),
        enabled=spec.get("enabled", True),
        forking=_forking(spec.get("forking") or {}),
    )
    built = Built(agent, place)
    built.refer(agent.domain_ref, Domain, "spec", "domainRef")
    built.refer(agent.credentials_ref, Credentials, "spec", "credentialsRef")
    built.unique("username in its domain", (agent.username, agent.domain_ref), "spec", "username")
    return built


def _forking(raw: dict[str, Any]) -> Forking:
    timeout = raw.get("ringTimeout")
    return Forking(ForkingMode(raw.get("mode", "parallel")), float(timeout) if timeout is not None else None)


def _keepalive(raw: dict[str, Any] | None, place: Place) -> Keepalive | None:
    if raw is None or raw.get("enabled", True) is False:
        return None
    keepalive = Keepalive(
        interval=float(raw.get("interval", Keepalive.interval)),
        failures_before_down=int(raw.get("failuresBeforeDown", Keepalive.failures_before_down)),
        successes_before_up=int(raw.get("successesBeforeUp", Keepalive.successes_before_up)),
        timeout=float(raw.get("timeout", Keepalive.timeout)),
    )
    if keepalive.timeout > keepalive.interval:
        place.child("timeout").warn(f"longer than the interval ({keepalive.interval:g} s): a target is pinged "
                                    "again only once its last ping is over")
    return keepalive


def build_peer(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    spec = document["spec"]
    balancing = spec.get("loadBalancing") or {}
    if spec["aor"].startswith("backend:"):
        place.child("spec", "aor").warn("backend: AORs are deprecated in Routr; prefer sip:")
    peer = Peer(
        ref,
        name,
        username=spec["username"],
        aor=spec["aor"],
        contact_addr=spec.get("contactAddr"),
        credentials_ref=spec.get("credentialsRef"),
        access_control_list_ref=spec.get("accessControlListRef"),
        load_balancing=LoadBalancing(
            algorithm=BalancingAlgorithm(balancing.get("algorithm", "round-robin").upper().replace("-", "_")),
            with_session_affinity=balancing.get("withSessionAffinity", False),
        ),
        max_contacts=int(spec.get("maxContacts", -1)),
        expires=spec.get("expires"),
        enabled=spec.get("enabled", True),
        trust_asserted_identity=spec.get("trustAssertedIdentity", False),
        keepalive=_keepalive(spec.get("keepalive"), place.child("spec", "keepalive")),
    )
    built = Built(peer, place)
    built.refer(peer.credentials_ref, Credentials, "spec", "credentialsRef")
    built.refer(peer.access_control_list_ref, AccessControlList, "spec", "accessControlListRef")
    built.unique("peer username", peer.username, "spec", "username")
    return built


def build_number(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    spec = document["spec"]
    location = spec["location"]
    geo = document["metadata"].get("geoInfo")
    number = Number(
        ref,
        name,
        tel_url=location["telUrl"],
        trunk_ref=spec.get("trunkRef"),
        aor_link=location.get("aorLink"),
        session_affinity_header=location.get("sessionAffinityHeader"),
        extra_headers=tuple(ExtraHeader(h["name"], h["value"]) for h in location.get("extraHeaders", ())),
        geo_info=GeoInfo(geo.get("city"), geo.get("country"), geo.get("countryIsoCode")) if geo else None,
    )
    built = Built(number, place)
    built.refer(number.trunk_ref, Trunk, "spec", "trunkRef")
    built.unique("telUrl", number.tel_url, "spec", "location", "telUrl")
    return built


def build_trunk(document: dict[str, Any], place: Place) -> Built:
    ref, name = _envelope(document)
    spec = document["spec"]
    inbound_raw, outbound_raw = spec.get("inbound"), spec.get("outbound")
    inbound = outbound = None
    if inbound_raw is not None:
        inbound = TrunkInbound(
            inbound_raw["uri"], inbound_raw.get("accessControlListRef"), inbound_raw.get("credentialsRef")
        )
    if outbound_raw is not None:
        uris = tuple(
            TrunkUri(
                host=entry["uri"]["host"],
                port=int(entry["uri"]["port"]),
                transport=entry["uri"]["transport"].lower(),
                user=entry["uri"].get("user"),
                priority=int(entry.get("priority", 0)),
                weight=int(entry.get("weight", 1)),
                enabled=entry.get("enabled", True),
            )
            for entry in outbound_raw["uris"]
        )
        outbound = TrunkOutbound(
            uris, outbound_raw.get("sendRegister", False), outbound_raw.get("credentialsRef"),
            uri_format=UriFormat(outbound_raw.get("uriFormat", UriFormat.DIALLED.value)),
            keepalive=_keepalive(outbound_raw.get("keepalive"), place.child("spec", "outbound", "keepalive")),
        )
    region = document["metadata"].get("region")
    trunk = Trunk(ref, name, inbound, outbound, region if isinstance(region, str) else None,
                  trust_asserted_identity=spec.get("trustAssertedIdentity", False))
    built = Built(trunk, place)
    if inbound is not None:
        built.refer(
            inbound.access_control_list_ref, AccessControlList, "spec", "inbound", "accessControlListRef"
        )
        built.refer(inbound.credentials_ref, Credentials, "spec", "inbound", "credentialsRef")
        built.unique("trunk inbound uri", inbound.uri.lower(), "spec", "inbound", "uri")
    if outbound is not None:
        built.refer(outbound.credentials_ref, Credentials, "spec", "outbound", "credentialsRef")
    return built


RESOURCE_BUILDERS: dict[str, Callable[[dict[str, Any], Place], Built]] = {
    "Agent": build_agent,
    "Peer": build_peer,
    "Domain": build_domain,
    "Number": build_number,
    "Trunk": build_trunk,
    "Credentials": build_credentials,
    "AccessControlList": build_access_control_list,
}


RESOURCE_CLASSES: dict[str, type[Resource]] = {
    "Agent": Agent,
    "Peer": Peer,
    "Domain": Domain,
    "Number": Number,
    "Trunk": Trunk,
    "Credentials": Credentials,
    "AccessControlList": AccessControlList,
}


@dataclass(frozen=True)
class Unbuilt:
    """A resource document that failed its schema: its ref still counts, so that refs to it are not also
    reported as dangling and a second use of its ref is still a duplicate."""

    kind: type[Resource]
    ref: str
    place: Place
