"""Connect: Routr's registrar and router for Agents, Peers, Domains, Numbers and Trunks (docs/connect.md)."""

from routr_ray.processors.connect.auth import FailureTracker
from routr_ray.processors.connect.decisions import Direction
from routr_ray.processors.connect.processor import (
    DIRECTION_KEY,
    FAILOVER_KEY,
    NEXT_HOP_EDGE_KEY,
    NEXT_HOP_FLOW_KEY,
    NEXT_HOP_KEY,
    ConnectProcessor,
)
from routr_ray.processors.connect.registrar import ExpiresPolicy
from routr_ray.processors.connect.resources_index import ConnectIndex, ResourceSource, StaticResources

__all__ = [
    "DIRECTION_KEY",
    "FAILOVER_KEY",
    "NEXT_HOP_EDGE_KEY",
    "NEXT_HOP_FLOW_KEY",
    "NEXT_HOP_KEY",
    "ConnectIndex",
    "ConnectProcessor",
    "Direction",
    "ExpiresPolicy",
    "FailureTracker",
    "ResourceSource",
    "StaticResources",
]
