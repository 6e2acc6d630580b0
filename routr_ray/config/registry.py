"""Registry config: Routr's `kind: Registry` (routr.md §1.5, §8.1) as routr-ray reads it (docs/trunks.md).

spec:
  registerInterval: 60        # seconds: the first back-off after a failed registration (doubles up to maxBackoff)
  methods: [INVITE, ...]      # the Allow header of the REGISTERs
  # routr-ray's own fields
  edgePortRef: edgeport-01    # the EdgePort that sends the REGISTERs (default: the first EdgePort)
  expires: 600                # the interval asked for
  maxBackoff: 1800
  gin: true                   # Require/Proxy-Require: gin (RFC 6140)
  # Routr's requesterAddr, apiAddr, cache and edgePorts are accepted and not used: routr-ray sends through its
  # own EdgePort, reads the trunks from the resources and keeps the registrations in the registrar actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routr_ray.config.problems import Place

__all__ = ["DEFAULT_ALLOW", "RegistryConfig", "build_registry"]

DEFAULT_ALLOW = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "INFO", "UPDATE", "PRACK", "REFER",
                 "NOTIFY")
_NOT_USED = ("requesterAddr", "apiAddr", "cache", "edgePorts")


@dataclass(frozen=True)
class RegistryConfig:
    expires: int = 600  # what we ask for (Routr sends Expires: 600)
    retry_interval: float = 60.0  # Routr's registerInterval: the first back-off after a failure
    max_backoff: float = 1800.0
    methods: tuple[str, ...] = DEFAULT_ALLOW  # the Allow header
    gin: bool = True  # Require/Proxy-Require: gin (Routr always sends them)
    edge_port_ref: str | None = None  # the EdgePort that sends the REGISTERs (default: the first one)


def build_registry(document: dict[str, Any], place: Place) -> RegistryConfig:
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    for name in _NOT_USED:
        if name in spec:
            at.child(name).warn(f"Routr's {name} is not used by routr-ray (see docs/trunks.md)")
    retry = float(spec.get("registerInterval", RegistryConfig.retry_interval))
    max_backoff = float(spec.get("maxBackoff", max(RegistryConfig.max_backoff, retry)))
    if max_backoff < retry:
        at.child("maxBackoff").error(f"must be at least registerInterval ({retry:g})")
    methods = tuple(str(m).upper() for m in spec.get("methods", DEFAULT_ALLOW))
    return RegistryConfig(expires=int(spec.get("expires", RegistryConfig.expires)), retry_interval=retry,
                          max_backoff=max_backoff, methods=methods or DEFAULT_ALLOW, gin=bool(spec.get("gin", True)),
                          edge_port_ref=spec.get("edgePortRef"))
