"""The seven connect gRPC services of ``protos/`` (Agents, Peers, Domains, Numbers, Trunks, CredentialsService,
ACLService): authenticate the caller, convert, call :class:`~routr_ray.api.core.ResourceApi`, convert back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from routr_ray.api import convert
from routr_ray.api.core import ResourceApi
from routr_ray.api.errors import ApiError
from routr_ray.api.kinds import KINDS, Kind
from routr_ray.api.rbac import Caller, authenticate
from routr_ray.api.store.base import Stored
from routr_ray.proto.gen import (
    acl_pb2_grpc,
    agents_pb2_grpc,
    credentials_pb2_grpc,
    domains_pb2_grpc,
    numbers_pb2_grpc,
    peers_pb2_grpc,
    trunks_pb2_grpc,
)

log = logging.getLogger(__name__)

# kind -> (generated servicer base, the function that adds it to a server, full service name)
SERVICES: dict[str, tuple[type, Callable[[Any, grpc.aio.Server], None], str]] = {
    "Agent": (agents_pb2_grpc.AgentsServicer, agents_pb2_grpc.add_AgentsServicer_to_server,
              "fonoster.routr.connect.agents.v2beta1.Agents"),
    "Peer": (peers_pb2_grpc.PeersServicer, peers_pb2_grpc.add_PeersServicer_to_server,
             "fonoster.routr.connect.peers.v2beta1.Peers"),
    "Domain": (domains_pb2_grpc.DomainsServicer, domains_pb2_grpc.add_DomainsServicer_to_server,
               "fonoster.routr.connect.domains.v2beta1.Domains"),
    "Number": (numbers_pb2_grpc.NumbersServicer, numbers_pb2_grpc.add_NumbersServicer_to_server,
               "fonoster.routr.connect.numbers.v2beta1.Numbers"),
    "Trunk": (trunks_pb2_grpc.TrunksServicer, trunks_pb2_grpc.add_TrunksServicer_to_server,
              "fonoster.routr.connect.trunks.v2beta1.Trunks"),
    "Credentials": (credentials_pb2_grpc.CredentialsServiceServicer,
                    credentials_pb2_grpc.add_CredentialsServiceServicer_to_server,
                    "fonoster.routr.connect.credentials.v2beta1.CredentialsService"),
    "AccessControlList": (acl_pb2_grpc.ACLServiceServicer, acl_pb2_grpc.add_ACLServiceServicer_to_server,
                          "fonoster.routr.connect.acl.v2beta1.ACLService"),
}


class ResourceServicer:
    """Create/Update/Get/Delete/List/FindBy of one kind."""

    kind: Kind

    def __init__(self, api: ResourceApi) -> None:
        self.api = api
        self.messages = convert.MESSAGES[self.kind.name]

    async def _call(self, context: grpc.aio.ServicerContext, work: Callable[[Caller], Awaitable[Message]]) -> Message:
        metadata = context.invocation_metadata()
        try:
            caller = await authenticate(metadata, self.api.store.key_roles)
            return await work(caller)
        except ApiError as exc:
            await context.abort(grpc.StatusCode[exc.code], exc.message)
            raise AssertionError("unreachable") from exc  # abort raises
        except Exception as exc:
            log.exception("%s call failed", self.kind.name)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the resource store is unavailable; retry")
            raise AssertionError("unreachable") from exc

    async def _messages(self, caller: Caller, items: list[Stored]) -> list[Message]:
        resolved = await convert.resolve_all(items, lambda refs: self.api.resolve(caller, refs))
        return [convert.to_message(item, resolved) for item in items]

    async def Create(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            document = convert.new_document(self.kind, request, convert.field_mask(context.invocation_metadata()))
            return (await self._messages(caller, [await self.api.create(caller, self.kind, document)]))[0]
        return await self._call(context, work)

    async def Update(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            mask = convert.field_mask(context.invocation_metadata())
            item = await self.api.update(caller, self.kind, request.ref,  # type: ignore[attr-defined]
                                         lambda document: convert.apply_request(self.kind, request, document,
                                                                                mask=mask))
            return (await self._messages(caller, [item]))[0]
        return await self._call(context, work)

    async def Get(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            item = await self.api.get(caller, self.kind, request.ref)  # type: ignore[attr-defined]
            return (await self._messages(caller, [item]))[0]
        return await self._call(context, work)

    async def Delete(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            await self.api.delete(caller, self.kind, request.ref)  # type: ignore[attr-defined]
            return empty_pb2.Empty()
        return await self._call(context, work)

    async def List(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            items, token = await self.api.list(caller, self.kind, request.page_size,  # type: ignore[attr-defined]
                                               request.page_token)  # type: ignore[attr-defined]
            response = self.messages.list_response(next_page_token=token)
            response.items.extend(await self._messages(caller, items))  # type: ignore[attr-defined]
            return response
        return await self._call(context, work)

    async def FindBy(self, request: Message, context: grpc.aio.ServicerContext) -> Message:  # noqa: N802
        async def work(caller: Caller) -> Message:
            names = request.DESCRIPTOR.fields_by_name
            field_name = getattr(request, "field_name" if "field_name" in names else "fieldName")
            value = getattr(request, "field_value" if "field_value" in names else "fieldValue")
            items = await self.api.find_by(caller, self.kind, field_name, value)
            assert self.messages.find_response is not None
            response = self.messages.find_response()
            response.items.extend(await self._messages(caller, items))  # type: ignore[attr-defined]
            return response
        return await self._call(context, work)


def servicer_class(kind_name: str) -> type:
    base, _, _ = SERVICES[kind_name]
    return type(f"{kind_name}Servicer", (ResourceServicer, base), {"kind": KINDS[kind_name]})


def add_services(api: ResourceApi, server: grpc.aio.Server) -> list[str]:
    """Add the seven services to ``server``; returns their full names (for grpc health)."""
    names = []
    for kind_name, (_, add, full_name) in SERVICES.items():
        add(servicer_class(kind_name)(api), server)
        names.append(full_name)
    return names
