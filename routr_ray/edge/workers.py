"""EdgePort workers: several processes serving one EdgePort's ports (``spec.workers``, SO_REUSEPORT).

One EdgePort process handles one core's worth of SIP. With ``workers: N`` the EdgePort runs as N processes that
bind the same ports with SO_REUSEPORT; the kernel gives each datagram or connection to one of them by a hash of
its source address and port. So a client's requests, retransmissions, CANCELs and ACKs reach the same worker,
and each stream connection stays with the worker that accepted it. Two things can still reach the wrong worker;
the siblings (:class:`Siblings`, the actor layer wires them over links) fix both:

* a response from a next hop that comes from an address that hashes to another worker than the one that sent
  the request. Every branch a worker creates names it (``z9hG4bK`` + ``rw<worker>.`` + random, RFC 3261
  §8.1.1.7 still holds: the rest is random). A response that matches no client transaction here, whose branch
  names another worker, is handed to that worker as it was received (:meth:`Siblings.forward`);
* a request to send over a connection (a TCP/TLS/WS flow a callee registered over) that another worker holds:
  the siblings are asked to send it (:meth:`Siblings.send_on_flow`); its responses come back on that connection
  to that worker, which forwards them by branch as above.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from routr_ray.edge.transports.base import Flow, TransportName
from routr_ray.sip.transaction_keys import MAGIC_COOKIE, make_branch

WORKER_TAG = "rw"
_PREFIX = MAGIC_COOKIE + WORKER_TAG


def worker_branch(worker: int) -> str:
    """A new branch naming ``worker``."""
    return make_branch(f"{WORKER_TAG}{worker}.{secrets.token_hex(8)}")


def worker_of_branch(branch: str | None) -> int | None:
    """The worker a branch of ours names; None for any other branch."""
    if branch is None or not branch.startswith(_PREFIX):
        return None
    digits, dot, _ = branch[len(_PREFIX):].partition(".")
    if not dot or not digits.isdigit() or len(digits) > 3:
        return None
    return int(digits)


class Siblings(Protocol):
    """The other workers of this EdgePort, as seen from one worker."""

    async def forward(self, worker: int, flow: Flow, data: bytes) -> bool:
        """Hand a message received here (``data`` from ``flow``) to ``worker``; False when it cannot be."""
        ...

    async def send_on_flow(self, transport: TransportName, host: str, port: int, data: bytes) -> bool:
        """Have the sibling that holds the connection to ``host:port`` send ``data``; False when none does."""
        ...


__all__ = ["WORKER_TAG", "Siblings", "worker_branch", "worker_of_branch"]
