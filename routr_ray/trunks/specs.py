"""Which trunks register, and how: Connect resources (+ the registry settings) -> :class:`RegistrationSpec`.

A Trunk registers when ``spec.outbound.sendRegister`` is true and ``spec.outbound.credentialsRef`` names
Credentials (Routr's Registry does the same, routr.md §8.1); it registers at its first enabled outbound URI by
priority (lowest first), then weight (highest first): Request-URI ``sip:host[:port]``, From/To
``sip:<uri user, else the credentials' username>@<host>``. A trunk with ``sendRegister`` and no credentials is
reported once (as a warning) and skipped: an unauthenticated REGISTER to a provider is never what is meant.
"""

from __future__ import annotations

import logging

from routr_ray.config import Resources
from routr_ray.config.registry import RegistryConfig
from routr_ray.config.resources import Credentials, Trunk, TrunkUri
from routr_ray.sip import format_host
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.trunks.registration import RegistrationSpec

__all__ = ["RegistrySettings", "registration_specs"]

log = logging.getLogger(__name__)

RegistrySettings = RegistryConfig  # the Registry document's settings (config/registry.py)


def registration_uri(trunk: Trunk) -> TrunkUri | None:
    if trunk.outbound is None:
        return None
    enabled = sorted((u for u in trunk.outbound.uris if u.enabled), key=lambda u: (u.priority, -u.weight))
    return enabled[0] if enabled else None


def registration_specs(resources: Resources, tokens: TrunkContactTokens,
                       settings: RegistryConfig | None = None) -> list[RegistrationSpec]:
    settings = settings or RegistryConfig()
    specs = []
    for trunk in resources.trunks:
        if trunk.outbound is None or not trunk.outbound.send_register:
            continue
        credentials = resources.get(Credentials, trunk.outbound.credentials_ref)
        uri = registration_uri(trunk)
        if credentials is None or uri is None:
            log.warning("trunk %s has sendRegister but no %s: not registered", trunk.ref,
                        "outbound credentialsRef" if credentials is None else "enabled outbound URI")
            continue
        host = format_host(uri.host)
        hostport = f"{host}:{uri.port}" if uri.port else host
        transport = uri.transport.lower()
        target = f"sip:{hostport}" + (f";transport={transport}" if transport != "udp" else "")
        user = uri.user or credentials.username
        specs.append(RegistrationSpec(
            trunk_ref=trunk.ref, target=target, request_uri=target, aor=f"sip:{user}@{host}",
            username=credentials.username, password=credentials.password, contact_token=tokens.token(trunk.ref),
            expires=settings.expires, gin=settings.gin, allow=settings.methods,
        ))
    return specs
