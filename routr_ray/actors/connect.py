"""Connect as a Serve processor deployment: builds :class:`ConnectProcessor` with the Location shard actors.

The driver loads the resource files and hands the loaded set to every replica as an init argument, so replicas
on other nodes need no copy of the files. The digest nonce key is generated once by the driver (or taken from
``ROUTR_RAY_NONCE_KEY``) and given to every replica, so any replica verifies any other's nonces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from routr_ray.actors.location import ShardedLocationClient, shard_handles
from routr_ray.config import Resources, load_resources
from routr_ray.processors.connect import ConnectProcessor, StaticResources
from routr_ray.proto.gen import processor_pb2


def connect_options(config_dir: Path, shard_count: int, nonce_key: str) -> dict[str, Any]:
    resources_dir = Path(config_dir) / "resources"
    resources = load_resources(resources_dir) if resources_dir.is_dir() else Resources()
    return {"resources": resources, "shard_count": shard_count, "nonce_key": nonce_key}


class ConnectDeploymentProcessor:
    """What ``serve://connect`` runs: a ConnectProcessor whose Location is the sharded actors."""

    def __init__(self, resources: Resources, shard_count: int, nonce_key: str) -> None:
        location = ShardedLocationClient(shard_handles(shard_count))
        self.processor = ConnectProcessor(StaticResources(resources), location, nonce_key=nonce_key.encode())

    async def process(self, request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        return await self.processor.process(request)

    async def process_batch(self, requests: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
        return await self.processor.process_batch(requests)

    async def process_serialized(self, payloads: list[bytes]) -> list[bytes]:
        return await self.processor.process_serialized(payloads)
