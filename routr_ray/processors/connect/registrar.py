"""The registrar (RFC 3261 §10.3) over the Location service, after authentication.

Differences from Routr (routr.md §3.2, §12): `Expires`/Contact `expires` with min/default/max and 423;
`Contact: *` with `Expires: 0` removes every binding; several Contacts per REGISTER; a REGISTER without
Contact lists the bindings; the 200 lists every current binding with its remaining expires (§10.3 step 8);
the Contact URI is stored with the NAT-corrected source (see `targets.py` for how both are used); a
REGISTER with the same Call-ID and a CSeq not higher than a binding's fails (§10.3 steps 6, 7); RFC 5626
outbound registrations get `Require: outbound` and their `+sip.instance`/`reg-id` echoed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.ops import LocationClient
from routr_ray.location.routes import route_id
from routr_ray.processors.connect.decisions import Reply
from routr_ray.processors.connect.targets import default_port, route_port
from routr_ray.proto.convert import transport_enum, transport_name
from routr_ray.proto.gen import location_pb2, processor_pb2
from routr_ray.sip.errors import ParseError
from routr_ray.sip.fields import NameAddr
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI

Clock = Callable[[], float]
MAX_EXPIRES = 2**31 - 1  # Route.expires is int32


@dataclass(frozen=True, slots=True)
class ExpiresPolicy:
    """RFC 3261 §10.2.1.1 / §10.3 step 7: bounds the registrar applies to requested expiration intervals."""

    minimum: int = 60
    default: int = 3600
    maximum: int = 7200

    def __post_init__(self) -> None:
        if not 0 < self.minimum <= self.default <= self.maximum:
            raise ValueError("expires bounds must satisfy 0 < minimum <= default <= maximum")

    def for_resource(self, expires: int | None) -> ExpiresPolicy:
        """An Agent's or Peer's own `expires` becomes its default and maximum (and the minimum when lower)."""
        if expires is None or expires <= 0:
            return self
        return ExpiresPolicy(min(self.minimum, expires), expires, expires)


DEFAULT_EXPIRES = ExpiresPolicy()


def location_failure(exc: LocationError) -> Reply:
    """INVALID_ARGUMENT (e.g. `exceeds maximum of N allowed contacts`) → 403 with that reason; anything
    else → 503 + Retry-After (the store is unreachable; the client retries)."""
    if exc.code is LocationErrorCode.INVALID_ARGUMENT:
        return Reply(403, _reason_text(exc.message))
    return Reply(503, None, (("Retry-After", "5"),))


def _reason_text(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:200] or "Forbidden"


def _delta_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise ParseError(f"bad expires value {value!r}")
    return min(int(value), MAX_EXPIRES)


def _unquote(value: str | None) -> str:
    if value is None:
        return ""
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    return value


def source_of(request: Request, msg: processor_pb2.MessageRequest) -> tuple[str, int, int]:
    """The NAT-corrected source (host, port, Transport enum): the packet's address as the EdgePort saw it
    (`sender`), else the top Via's received/rport (RFC 3261 §18.2.1, RFC 3581), else its sent-by."""
    via = request.top_via
    if msg.HasField("sender") and msg.sender.host:
        sender = msg.sender
        port = sender.port if sender.port > 0 else default_port(transport_name(sender.transport))
        return sender.host, port, sender.transport
    if via is None:
        raise ParseError("no Via")
    transport = transport_enum(via.transport) if via.transport in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS") else 0
    host = via.received or via.host
    rport = via.rport
    port = int(rport) if rport and rport.isdigit() else (via.port or default_port(via.transport))
    return host, port, transport


class Registrar:
    def __init__(self, location: LocationClient, *, clock: Clock = time.time) -> None:
        self.location = location
        self.clock = clock

    async def register(
        self,
        request: Request,
        msg: processor_pb2.MessageRequest,
        aor: str,
        *,
        max_contacts: int = -1,
        policy: ExpiresPolicy = DEFAULT_EXPIRES,
    ) -> Reply:
        """Apply one authenticated REGISTER for `aor` and answer it (RFC 3261 §10.3 steps 5-8)."""
        try:
            contacts = request.contacts
            header_expires = _delta_seconds(request.headers.get("Expires"))
        except ParseError as exc:
            return Reply(400, f"Bad Request ({exc})")
        try:
            if not contacts:  # §10.3 step 8: a query
                return await self._bindings_reply(aor)
            if any(c.wildcard for c in contacts):
                # §10.3 step 6: "*" only alone and with Expires: 0
                if len(contacts) != 1 or header_expires != 0:
                    return Reply(400, "Bad Request (Contact: * needs Expires: 0 and no other Contact)")
                stale = self._out_of_order(request, await self._bindings(aor))
                if stale is not None:
                    return stale
                await self.location.remove_routes(location_pb2.RemoveRoutesRequest(aor=aor))
                return Reply(200)
            plans: list[tuple[NameAddr, int]] = []
            for contact in contacts:
                try:
                    contact.uri  # noqa: B018 - parse it now: a bad Contact is a 400
                    expires = _delta_seconds(contact.params.get("expires"))
                except ParseError as exc:
                    return Reply(400, f"Bad Request (bad Contact: {exc})")
                if expires is None:
                    expires = header_expires if header_expires is not None else policy.default
                if 0 < expires < policy.minimum:  # §10.3 step 7: 423 + Min-Expires
                    return Reply(423, None, (("Min-Expires", str(policy.minimum)),))
                plans.append((contact, min(expires, policy.maximum)))
            source = source_of(request, msg)
            now_ms = int(self.clock() * 1000)
            routes = [build_route(request, msg, aor, contact, expires, source, now_ms) for contact, expires in plans]
            existing = {route_id(r): r for r in await self._bindings(aor)}
            stale = self._out_of_order(request, [existing[i] for i in map(route_id, routes) if i in existing])
            if stale is not None:
                return stale
            for route in routes:
                await self.location.add_route(
                    location_pb2.AddRouteRequest(aor=aor, route=route, max_contacts=max(max_contacts, 0))
                )
            reply = await self._bindings_reply(aor)
            if _is_outbound(request, contacts) and reply.status == 200:
                return Reply(200, None, (("Require", "outbound"), *reply.headers))  # RFC 5626 §6
            return reply
        except LocationError as exc:
            return location_failure(exc)

    async def _bindings(self, aor: str) -> list[location_pb2.Route]:
        return list((await self.location.find_routes(location_pb2.FindRoutesRequest(aor=aor))).routes)

    @staticmethod
    def _out_of_order(request: Request, bindings: list[location_pb2.Route]) -> Reply | None:
        """RFC 3261 §10.3 steps 6-7: a binding made with this Call-ID is updated or removed only by a higher
        CSeq; "otherwise, the update MUST be aborted and the request fails" (400, as Kamailio/OpenSIPS)."""
        call_id = request.call_id or ""
        cseq = request.cseq.seq if request.cseq is not None else 0
        for route in bindings:
            if call_id and route.call_id == call_id and cseq <= route.cseq:
                return Reply(400, "Bad Request (CSeq not higher than the binding's, RFC 3261 §10.3)")
        return None

    async def _bindings_reply(self, aor: str) -> Reply:
        now_ms = int(self.clock() * 1000)
        headers = []
        for route in await self._bindings(aor):
            remaining = route.expires - (now_ms - route.registered_on) // 1000
            if remaining > 0:
                headers.append(("Contact", f"<{binding_uri(route)}>;expires={remaining}{_outbound_params(route)}"))
        return Reply(200, None, tuple(headers))


def _is_outbound(request: Request, contacts: list[NameAddr]) -> bool:
    """RFC 5626 §6: `Supported: outbound` and a Contact with both `reg-id` and `+sip.instance`."""
    supported = {t.strip().lower() for v in request.headers.get_all("Supported") for t in v.split(",")}
    return "outbound" in supported and any(
        not c.wildcard and "reg-id" in c.params and "+sip.instance" in c.params for c in contacts)


def _outbound_params(route: location_pb2.Route) -> str:
    """The binding's `+sip.instance` and `reg-id`, echoed in the 200's Contact (RFC 5626 §6, RFC 5627)."""
    out = ""
    if route.instance_id:
        out += f';+sip.instance="{route.instance_id}"'
        if route.reg_id > 0:
            out += f";reg-id={route.reg_id}"
    return out


def binding_uri(route: location_pb2.Route) -> str:
    """The Contact of a binding as the 200 lists it: the registered URI, or user@source for a binding a
    Routr client stored without one."""
    if route.contact_uri:
        return route.contact_uri
    transport = transport_name(route.transport)
    uri = URI("sip", route.user or None, route.host, route_port(route))
    if transport != "UDP":
        uri.params["transport"] = transport.lower()
    return str(uri)


def build_route(
    request: Request,
    msg: processor_pb2.MessageRequest,
    aor: str,
    contact: NameAddr,
    expires: int,
    source: tuple[str, int, int],
    now_ms: int,
) -> location_pb2.Route:
    """The Location binding of one Contact (routr.md §3.2 createRoute, plus the Contact itself)."""
    host, port, transport = source
    via = request.top_via
    route = location_pb2.Route(
        user=contact.uri.user or "",
        host=host,
        port=str(port),
        transport=transport,
        advertised_host=via.host if via else host,
        advertised_port=str(via.port or default_port(via.transport)) if via else str(port),
        registered_on=now_ms,
        expires=expires,
        session_count=_session_count(request),
        edge_port_ref=msg.edge_port_ref,
        contact_uri=contact.uri_text,
        instance_id=_unquote(contact.params.get("+sip.instance")),
        call_id=request.call_id or "",
    )
    route.listening_points.extend(msg.listening_points)
    route.localnets.extend(msg.localnets)
    route.external_addrs.extend(msg.external_addrs)
    reg_id = contact.params.get("reg-id")
    if reg_id and reg_id.isdigit():
        route.reg_id = int(reg_id)
    q = contact.params.get("q")
    try:
        route.q_value = float(q) if q is not None else -1.0
    except ValueError:
        route.q_value = -1.0
    cseq = request.cseq
    if cseq is not None:
        route.cseq = cseq.seq
    route.path.extend(request.headers.get_all("Path"))
    if not route.user:
        route.user = aor.split(":", 1)[-1].split("@", 1)[0]
    return route


def _session_count(request: Request) -> int:
    value = (request.headers.get("X-Session-Count") or "").strip()
    return int(value) if value.isdigit() else -1
