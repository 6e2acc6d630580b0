"""A client of the provisioning API generated from protos/ (routr_ray/proto/gen stubs), for tests: one stub per
service and metadata for a key."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import grpc

from routr_ray.proto.gen import (
    acl_pb2_grpc,
    agents_pb2_grpc,
    credentials_pb2_grpc,
    domains_pb2_grpc,
    numbers_pb2_grpc,
    peers_pb2_grpc,
    trunks_pb2_grpc,
)


@dataclass
class Stubs:
    agents: agents_pb2_grpc.AgentsStub
    peers: peers_pb2_grpc.PeersStub
    domains: domains_pb2_grpc.DomainsStub
    numbers: numbers_pb2_grpc.NumbersStub
    trunks: trunks_pb2_grpc.TrunksStub
    credentials: credentials_pb2_grpc.CredentialsServiceStub
    acl: acl_pb2_grpc.ACLServiceStub


def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(agents_pb2_grpc.AgentsStub(channel), peers_pb2_grpc.PeersStub(channel),
                 domains_pb2_grpc.DomainsStub(channel), numbers_pb2_grpc.NumbersStub(channel),
                 trunks_pb2_grpc.TrunksStub(channel), credentials_pb2_grpc.CredentialsServiceStub(channel),
                 acl_pb2_grpc.ACLServiceStub(channel))


def bearer(key: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"), *extra)


def basic(key: str) -> tuple[tuple[str, str], ...]:
    """What Routr's SDK sends with username = the key id and password = the secret."""
    _, key_id, secret = key.split("-", 2)
    return (("authorization", "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()),)
