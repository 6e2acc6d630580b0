"""Calls across EdgePorts: the other EdgePorts of the cluster, as one EdgePort (worker) sees them (issue 17).

A callee registered through EdgePort B (its TCP, TLS, WS or WSS connection, or the NAT binding of a UDP phone with
``ob``) can only be reached from B. A request for it that arrives at EdgePort A is still A's to handle: A keeps
the server transaction, runs the client transaction (timers, retransmissions, CANCEL, Timer C) and relays the
responses; only the bytes go out through B. That is the worker mechanism (``workers.py``) made cluster-wide:

* every branch an EdgePort in a cluster creates names it and its worker (:func:`owned_branch`:
  ``z9hG4bKrw<worker>.<edge tag>.<random>``, the tag from ``routr_ray/util/edge_tag.py``; the rest is random, so
  RFC 3261 §8.1.1.7 still holds);
* A asks B to put a request on the wire (:meth:`Peers.send`): over the connection B holds to the callee (or one
  a worker of B holds), from B's UDP socket (the NAT pinhole of a UDP flow was opened toward B's address), or to
  an address B faces. The request already names B in its top Via and callee-side Record-Route entry (the
  processor wrote B's address, from the binding's listening points; behind a wildcard bind B fills in its own
  address as it would for its own requests, ``advertise.py``);
* a response reaching B whose branch names another EdgePort is handed to that EdgePort's worker as it was
  received (:meth:`Peers.hand_back`), if its top Via is B's own (B sent the request; anything else is a stray);
  retransmissions, the 200 to a CANCEL and 2xx retransmissions after the transaction take the same way.

In-dialog requests follow the Record-Route of both EdgePorts: each entry names its EdgePort (``rre=<tag>``), and
the processor of the EdgePort a request reaches sends it on through the EdgePort named by the next entry
(docs/distributed.md). The actors wire :class:`Peers` over the data plane (``routr_ray/actors/edgeport.py``); the
integration tests wire two EdgePorts in one process directly.
"""

from __future__ import annotations

import secrets
from typing import NamedTuple, Protocol

from routr_ray.edge.transports.base import Flow, TransportName
from routr_ray.edge.workers import WORKER_TAG
from routr_ray.sip.transaction_keys import MAGIC_COOKIE, make_branch
from routr_ray.util.edge_tag import edge_tag, is_edge_tag

__all__ = ["BranchOwner", "Peers", "edge_tag", "owned_branch", "owner_of_branch"]

_PREFIX = MAGIC_COOKIE + WORKER_TAG


class BranchOwner(NamedTuple):
    """Who owns the client transaction of a branch: an EdgePort's tag (None: a branch naming only a worker, of
    the EdgePort that reads it) and its worker."""

    tag: str | None
    worker: int


def owned_branch(tag: str, worker: int) -> str:
    """A new branch naming EdgePort ``tag``'s ``worker`` (``workers.worker_of_branch`` still reads the worker)."""
    return make_branch(f"{WORKER_TAG}{worker}.{tag}.{secrets.token_hex(8)}")


def owner_of_branch(branch: str | None) -> BranchOwner | None:
    """The owner a branch of ours names; None for any other branch."""
    if branch is None or not branch.startswith(_PREFIX):
        return None
    digits, dot, rest = branch[len(_PREFIX):].partition(".")
    if not dot or not digits.isdigit() or len(digits) > 3:
        return None
    tag, dot, _ = rest.partition(".")
    return BranchOwner(tag if dot and is_edge_tag(tag) else None, int(digits))


class Peers(Protocol):
    """The other EdgePorts of the cluster (by tag), as seen from one EdgePort worker."""

    async def send(self, tag: str, transport: TransportName, host: str, port: int, data: bytes, *, flow: bool,
                   server_name: str | None = None) -> bool:
        """Have EdgePort ``tag`` send ``data`` to ``host:port`` over ``transport``; with ``flow``, only over a
        connection it (or one of its workers) holds. False when it cannot (unknown, unreachable, no such flow)."""
        ...

    async def hand_back(self, tag: str, worker: int, flow: Flow, data: bytes) -> bool:
        """Hand a message received here (``data`` from ``flow``) to EdgePort ``tag``'s ``worker``."""
        ...
