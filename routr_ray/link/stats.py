"""What one process's link clients did (issue 21): calls by service and path, calls in flight.

Plain ints updated on the event loop by :func:`routr_ray.actors.links.linked`; the process registry
(``routr_ray/observability/process_metrics.py``) turns them into ``routr_link_calls_total{service, path}`` (``link``:
over the data plane; ``ray``: the Ray-call fallback, taken when no server of the service could be reached) and
``routr_link_in_flight{service}``, and ``routr_link_servers{service}`` (the servers of the service this process knows
from the registry: for a processor deployment, its replicas). ``service`` names come from the deployment (processor deployments, Location
shards, the dispatcher): a closed set.
"""

from __future__ import annotations

__all__ = ["LINK_STATS", "LinkStats"]


class LinkStats:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.in_flight: dict[str, int] = {}
        self.servers: dict[str, int] = {}

    def call(self, service: str, path: str) -> None:
        key = (service, path)
        self.calls[key] = self.calls.get(key, 0) + 1

    def started(self, service: str) -> None:
        self.in_flight[service] = self.in_flight.get(service, 0) + 1

    def finished(self, service: str) -> None:
        self.in_flight[service] = self.in_flight.get(service, 1) - 1


LINK_STATS = LinkStats()
