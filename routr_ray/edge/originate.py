"""Requests the EdgePort sends on its own behalf (out of dialog): the trunks' REGISTERs (issue 15), and what
else needs to leave from the EdgePort's address and get its final response back (e.g. OPTIONS pings).

Why the EdgePort: the provider must reach us back at the Contact we register and send its responses to our Via,
so the request must leave from the EdgePort's socket (the same UDP port phones and trunks use: a NAT in front of
us already maps it); the EdgePort already matches responses to client transactions, retransmits over UDP and
resolves names without blocking (RFC 3263). See docs/trunks.md.

:meth:`Originator.send` takes a request whose top Via is ours to complete (host ``0.0.0.0``, no branch: the
convention processors use, ``advertise.py``) and whose Contact host may be ``0.0.0.0`` too, and:

* finds the server: ``target`` (a SIP URI; RFC 3263 through ``next_hop.py`` for a name without a port);
* fills in our address toward it: the first external address when the server is in none of our localnets (a
  provider on the Internet), else the address our packets to it leave from; the port of our listener for the
  transport; sets the branch (RFC 3261 §8.1.1.7) and the Via transport;
* runs a non-INVITE client transaction (§17.1.2: Timer E retransmissions over UDP, Timer F, or the caller's
  shorter ``timeout``) and returns the final response; None when there is none (timeout, an ICMP or transport
  error, no route). A server that fails that way
  or with 503 / 408 is followed by the next server of the name (§4.3), if any.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from routr_ray.edge.advertise import WILDCARD_HOSTS
from routr_ray.edge.next_hop import NextHop, NoRoute
from routr_ray.edge.transports import TransportName
from routr_ray.edge.txn_runner import RunningTransaction
from routr_ray.sip import URI, ParseError, Request, Response, parse_uri
from routr_ray.sip.transaction import NonInviteClientTransaction
from routr_ray.sip.transaction_effects import Timer
from routr_ray.sip.transaction_keys import client_key

if TYPE_CHECKING:
    from routr_ray.edge.edgeport import EdgePort

__all__ = ["Originator"]

log = logging.getLogger(__name__)


class _Waiter:
    """The transaction user of one originated request: the final response resolves ``future``."""

    def __init__(self, edge: EdgePort, future: asyncio.Future[Response | None]) -> None:
        self.edge = edge
        self.future = future

    def _done(self, value: Response | None) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def txn_deliver(self, txn: RunningTransaction, message: Any) -> None:
        if isinstance(message, Response) and message.status >= 200:
            self._done(message)

    def txn_send_ack(self, txn: RunningTransaction, response: Any) -> None:  # non-INVITE: never
        pass

    def txn_timeout(self, txn: RunningTransaction, timer: Timer) -> None:
        self._done(None)

    def txn_transport_error(self, txn: RunningTransaction) -> None:
        self._done(None)

    def txn_cancel_branch(self, txn: RunningTransaction) -> None:
        pass

    def txn_terminated(self, txn: RunningTransaction) -> None:
        if self.edge.client_txns.get(txn.key) is txn:
            self.edge.client_txns.remove(txn.key)
        self._done(None)


@dataclass(frozen=True)
class _Origin:
    """The context of an originated transaction: where it went (an ICMP unreachable from there fails it,
    ``EdgePort._on_unreachable``)."""

    hop: NextHop


class Originator:
    def __init__(self, edge: EdgePort) -> None:
        self.edge = edge

    async def send(self, request: Request, target: str | URI,
                   timeout: float | None = None) -> Response | None:  # noqa: ASYNC109
        """``timeout``: give up on each server after this many seconds (an OPTIONS keepalive), not Timer F."""
        uri = parse_uri(target) if isinstance(target, str) else target
        try:
            hop: NextHop | None = await self.edge.hops.for_uri(uri, (uri.transport or "udp"))
        except NoRoute as exc:
            log.info("no route to %s for %s: %s", uri, request.method, exc.reason)
            return None
        response: Response | None = None
        while hop is not None:
            response = await self._send_to(request.copy(), hop, timeout)  # type: ignore[arg-type]
            if response is not None and response.status not in (408, 503):
                return response
            if not hop.alternates:
                break
            self.edge.hold_down.mark(hop.transport.value, hop.host, hop.port)
            hop = hop.alternates[0]._replace(alternates=hop.alternates[1:])
        return response

    async def _send_to(self, request: Request, hop: NextHop,
                       timeout: float | None = None) -> Response | None:  # noqa: ASYNC109
        edge = self.edge
        listener = edge.listeners.get(hop.transport)
        if listener is None:
            return None
        own_host, own_port = listener.local_address
        local = own_host
        if own_host in WILDCARD_HOSTS:
            local = edge.routes_from.toward(hop.host) or ("::1" if ":" in hop.host else "127.0.0.1")
        advertised = self._advertised(hop.host, local)
        if hop.transport is TransportName.UDP and own_host in WILDCARD_HOSTS:
            hop = hop._replace(source=local)
        branch = edge.new_branch()
        if not _complete(request, advertised, own_port, hop.transport, branch):
            return None
        machine = NonInviteClientTransaction(request, reliable=hop.transport is not TransportName.UDP,
                                             timers=edge.options.timers)
        future: asyncio.Future[Response | None] = asyncio.get_running_loop().create_future()
        key = client_key(branch, request.method)

        def send(txn: RunningTransaction, message: Any, retransmission: bool) -> None:
            edge._transmit(hop, bytes(message), txn, None, method=message.method)

        txn = RunningTransaction(machine, key, send=send, tu=_Waiter(edge, future), context=_Origin(hop))
        if not edge.client_txns.add(key, txn):
            return None
        txn.start()
        # Timer F ends the transaction (64*T1); the margin covers a transaction abandoned at shutdown
        wait = (edge.options.timers.initial(Timer.F, False) or 32.0) + 2.0
        if timeout is not None:
            wait = min(wait, timeout)
        try:
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            txn.abandon()
            if edge.client_txns.get(key) is txn:
                edge.client_txns.remove(key)
            return None

    def _advertised(self, target: str, local: str) -> str:
        """Our address as the server should see it (see the module docstring)."""
        template = self.edge._request_template
        external = [a for a in template.external_addrs if a]
        if not external:
            return local
        try:
            ip = ipaddress.ip_address(target.strip("[]"))
        except ValueError:
            return external[0].strip("[]")
        for entry in template.localnets:
            try:
                net = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                continue
            if ip.version == net.version and ip in net:
                return local
        return external[0].strip("[]")


def _complete(request: Request, host: str, port: int, transport: TransportName, branch: str) -> bool:
    """Our top Via and wildcard Contact hosts filled in (see the module docstring); False when unusable."""
    try:
        via = request.top_via
        contacts = request.contacts
    except ParseError:
        return False
    if via is None or via.host not in WILDCARD_HOSTS:
        return False
    via.host, via.port = host, port
    via.transport = transport.via_name
    via.params = {"branch": branch, **{k: v for k, v in via.params.items() if k != "branch"}}
    request.replace_top_via(via)
    if any(c.uri.host in WILDCARD_HOSTS for c in contacts if not c.wildcard):
        request.headers.remove("Contact")
        for contact in contacts:
            if not contact.wildcard and contact.uri.host in WILDCARD_HOSTS:
                contact = contact.copy()
                uri = contact.uri.copy()
                uri.host, uri.port = host, port
                if transport is not TransportName.UDP:
                    uri.params["transport"] = transport.via_name.lower()
                contact.uri = uri
            request.headers.add("Contact", str(contact))
    return True
