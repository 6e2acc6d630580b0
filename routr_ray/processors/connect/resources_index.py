"""Lookups Connect needs on top of `routr_ray.config.Resources` (all O(1) after the first use), and the
small interface a resource source implements so that an API-backed source can replace the files later.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Protocol

from routr_ray.config import Resources
from routr_ray.config.resources import AccessControlList, Agent, Credentials, Domain, Number, Peer, Trunk
from routr_ray.location.aor import normalize_aor
from routr_ray.location.errors import LocationError


class ResourceSource(Protocol):
    """Where a processor replica gets its current resources (files today, an API tomorrow)."""

    def current(self) -> Resources: ...


class StaticResources:
    """A fixed set (tests, or the driver handing a loaded set to a replica)."""

    def __init__(self, resources: Resources) -> None:
        self._resources = resources

    def current(self) -> Resources:
        return self._resources


def canonical_aor(aor: str) -> str | None:
    try:
        return normalize_aor(aor)
    except LocationError:
        return None


def tel_candidates(number: str) -> tuple[str, ...]:
    """The `telUrl` forms a dialled/received number may be stored as: as written, and with or without `+`
    (providers differ on the E.164 `+`)."""
    number = number.strip()
    if number.startswith("tel:"):
        number = number[4:]
    number = number.split(";", 1)[0]
    bare = number.lstrip("+")
    return (f"tel:{number}", f"tel:+{bare}", f"tel:{bare}")


class ConnectIndex:
    """Resources plus the indexes Connect routes with. Build one per resource set (cheap, lazy)."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    # ---- plain lookups -------------------------------------------------------------------------

    def domain(self, domain_uri: str) -> Domain | None:
        return self.resources.domain_by_uri(domain_uri) if domain_uri else None

    def agent(self, username: str | None, domain_uri: str) -> Agent | None:
        if not username:
            return None
        return self.resources.agent(username, domain_uri)

    def peer_by_username(self, username: str | None) -> Peer | None:
        return self.resources.peer_by_username(username) if username else None

    def peer_by_aor(self, aor: str) -> Peer | None:
        key = canonical_aor(aor)
        return self._peers_by_aor.get(key) if key else None

    def agent_by_aor(self, aor: str) -> Agent | None:
        key = canonical_aor(aor)
        return self._agents_by_aor.get(key) if key else None

    def number(self, dialled: str | None) -> Number | None:
        if not dialled:
            return None
        for candidate in tel_candidates(dialled):
            found = self.resources.number_by_tel_url(candidate)
            if found is not None:
                return found
        return None

    def trunk_by_inbound_uri(self, host: str) -> Trunk | None:
        return self.resources.trunk_by_inbound_uri(host) if host else None

    def trunk(self, ref: str | None) -> Trunk | None:
        return self.resources.get(Trunk, ref)

    def number_by_ref(self, ref: str | None) -> Number | None:
        return self.resources.get(Number, ref)

    def domain_of(self, agent: Agent) -> Domain | None:
        return self.resources.get(Domain, agent.domain_ref)

    def credentials(self, ref: str | None) -> Credentials | None:
        return self.resources.get(Credentials, ref)

    def acl(self, ref: str | None) -> AccessControlList | None:
        return self.resources.get(AccessControlList, ref)

    def peer_by_credentials_username(self, username: str) -> Peer | None:
        return self._peers_by_credentials_username.get(username)

    # ---- indexes -------------------------------------------------------------------------------

    @cached_property
    def _peers_by_aor(self) -> Mapping[str, Peer]:
        out: dict[str, Peer] = {}
        for peer in self.resources.peers:
            key = canonical_aor(peer.aor)
            if key is not None:
                out.setdefault(key, peer)
        return MappingProxyType(out)

    @cached_property
    def _agents_by_aor(self) -> Mapping[str, Agent]:
        out: dict[str, Agent] = {}
        for agent in self.resources.agents:
            domain = self.domain_of(agent)
            if domain is not None:
                key = canonical_aor(f"sip:{agent.username}@{domain.domain_uri}")
                if key is not None:
                    out[key] = agent
        return MappingProxyType(out)

    @cached_property
    def _peers_by_credentials_username(self) -> Mapping[str, Peer]:
        out: dict[str, Peer] = {}
        for peer in self.resources.peers:
            creds = self.credentials(peer.credentials_ref)
            if creds is not None:
                out.setdefault(creds.username, peer)
        return MappingProxyType(out)
