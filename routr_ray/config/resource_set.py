"""A checked set of Connect resources: refs unique across all kinds, every ref resolvable.

Like Routr's simpledata (routr.md §1.9) a set is refused on duplicate refs or dangling refs; unlike it,
every such problem is reported (file and pointer), not only the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import TypeVar

from routr_ray.config.problems import Place
from routr_ray.config.resources import (
    AccessControlList,
    Agent,
    Built,
    Credentials,
    Domain,
    Number,
    Peer,
    Resource,
    Trunk,
    Unbuilt,
)

R = TypeVar("R", Agent, Peer, Domain, Number, Trunk, Credentials, AccessControlList)


@dataclass(frozen=True)
class Resources:
    agents: tuple[Agent, ...] = ()
    peers: tuple[Peer, ...] = ()
    domains: tuple[Domain, ...] = ()
    numbers: tuple[Number, ...] = ()
    trunks: tuple[Trunk, ...] = ()
    credentials: tuple[Credentials, ...] = ()
    access_control_lists: tuple[AccessControlList, ...] = ()

    def all(self) -> Iterable[Resource]:
        yield from self.agents
        yield from self.peers
        yield from self.domains
        yield from self.numbers
        yield from self.trunks
        yield from self.credentials
        yield from self.access_control_lists

    @cached_property
    def by_ref(self) -> Mapping[str, Resource]:
        return MappingProxyType({resource.ref: resource for resource in self.all()})

    def get(self, kind: type[R], ref: str | None) -> R | None:
        """The resource of that kind with that ref, or None."""
        found = self.by_ref.get(ref) if ref is not None else None
        return found if isinstance(found, kind) else None

    def domain_by_uri(self, domain_uri: str) -> Domain | None:
        return self._domains_by_uri.get(domain_uri.lower())

    def agent(self, username: str, domain_uri: str) -> Agent | None:
        """The Agent with that username in the Domain whose domainUri is `domain_uri`."""
        domain = self.domain_by_uri(domain_uri)
        return self._agents_by_key.get((username, domain.ref)) if domain else None

    def peer_by_username(self, username: str) -> Peer | None:
        return self._peers_by_username.get(username)

    def number_by_tel_url(self, tel_url: str) -> Number | None:
        return self._numbers_by_tel_url.get(tel_url)

    def trunk_by_inbound_uri(self, uri: str) -> Trunk | None:
        return self._trunks_by_inbound_uri.get(uri.lower())

    @cached_property
    def _domains_by_uri(self) -> Mapping[str, Domain]:
        return MappingProxyType({d.domain_uri.lower(): d for d in self.domains})

    @cached_property
    def _agents_by_key(self) -> Mapping[tuple[str, str], Agent]:
        return MappingProxyType({(a.username, a.domain_ref): a for a in self.agents})

    @cached_property
    def _peers_by_username(self) -> Mapping[str, Peer]:
        return MappingProxyType({p.username: p for p in self.peers})

    @cached_property
    def _numbers_by_tel_url(self) -> Mapping[str, Number]:
        return MappingProxyType({n.tel_url: n for n in self.numbers})

    @cached_property
    def _trunks_by_inbound_uri(self) -> Mapping[str, Trunk]:
        return MappingProxyType({t.inbound.uri.lower(): t for t in self.trunks if t.inbound})


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "AEIOU" else f"a {noun}"


def kind_name(kind: type[Resource]) -> str:
    return kind.__name__


def assemble(documents: Sequence[Built | Unbuilt]) -> Resources:
    """Check refs across the set, in document order (errors are recorded at the documents' places),
    and return the resources that were built."""
    built = [item for item in documents if isinstance(item, Built)]
    owners = [
        (item.resource.ref, type(item.resource), item.place)
        if isinstance(item, Built)
        else (item.ref, item.kind, item.place)
        for item in documents
    ]
    kind_by_ref: dict[str, tuple[type[Resource], Place]] = {}
    for ref, kind, place in owners:
        if ref in kind_by_ref:
            _, first = kind_by_ref[ref]
            place.child("ref").error(
                f"duplicate ref {ref!r}: already used by the {kind_name(kind_by_ref[ref][0])} "
                f"at {first.file}: {first.pointer or '/'}"
            )
        else:
            kind_by_ref[ref] = (kind, place)
    for item in built:
        for reference in item.references:
            target_kind = kind_by_ref.get(reference.ref, (None, None))[0]
            expected = kind_name(reference.target)
            if target_kind is None:
                reference.place.error(f"dangling ref: there is no {expected} with ref {reference.ref!r}")
            elif target_kind is not reference.target:
                reference.place.error(
                    f"ref {reference.ref!r} names {_a(kind_name(target_kind))}, expected {_a(expected)}"
                )
    first_by_value: dict[tuple[str, object], tuple[Built, Place]] = {}
    for item in built:
        for unique in item.unique_values:
            first, first_place = first_by_value.setdefault((unique.label, unique.value), (item, unique.place))
            if first is not item:
                unique.place.error(
                    f"duplicate {unique.label}: already used by the {kind_name(type(first.resource))} "
                    f"{first.resource.ref!r} at {first_place.file}: {first_place.pointer}"
                )

    def of(kind: type[R]) -> tuple[R, ...]:
        return tuple(item.resource for item in built if type(item.resource) is kind)  # type: ignore[misc]

    return Resources(
        agents=of(Agent),
        peers=of(Peer),
        domains=of(Domain),
        numbers=of(Number),
        trunks=of(Trunk),
        credentials=of(Credentials),
        access_control_lists=of(AccessControlList),
    )
