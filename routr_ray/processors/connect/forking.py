"""Which contacts of an AOR a call rings, and in what order (RFC 3261 §16.6; issue 16).

Location answers every live binding of an agent, most recent first. The agent's `forking` setting (a routr-ray
extension of the Agent resource) turns them into branches in groups; the EdgePort rings group 0, and the next
group when every branch of the current one has ended without a 2xx or 6xx, or when the group's ring timeout
passes (its branches are then CANCELled):

* ``parallel`` (default): by Contact q, highest first (RFC 3261 §16.6 "in order of decreasing q"); contacts with
  equal q in one group, in parallel. A Contact without q counts as 1.0. ``ringTimeout``, when set, bounds each
  group.
* ``sequential``: one contact per group, in q order then most recent first, each ringing ``ringTimeout`` seconds
  (default 20).
* ``latest``: the most recent binding only (Routr's behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence

from routr_ray.config.resources import Forking, ForkingMode
from routr_ray.processors.connect.decisions import Branch
from routr_ray.processors.connect.targets import target_of
from routr_ray.proto.gen import location_pb2

DEFAULT_SEQUENTIAL_TIMEOUT = 20.0
MAX_BRANCHES = 16  # a bound on the INVITEs one call sends (maxContacts bounds bindings per AOR already)


def q_of(route: location_pb2.Route) -> float:
    """The binding's Contact q (RFC 3261 §20.10); unspecified (-1) counts as the highest, 1.0."""
    return 1.0 if route.q_value < 0 else route.q_value


def branches_of(routes: Sequence[location_pb2.Route], forking: Forking) -> tuple[list[Branch], dict[int, float]]:
    """The branches (first one first) and the ring timeout of each group that has one."""
    if forking.mode is ForkingMode.LATEST or len(routes) == 1:
        routes = routes[:1]
    ordered = sorted(routes[:MAX_BRANCHES], key=q_of, reverse=True)  # stable: most recent first within a q
    branches: list[Branch] = []
    timeouts: dict[int, float] = {}
    group, last_q = -1, None
    for route in ordered:
        q = q_of(route)
        if forking.mode is ForkingMode.SEQUENTIAL or q != last_q:
            group += 1
            last_q = q
            timeout = forking.ring_timeout
            if forking.mode is ForkingMode.SEQUENTIAL and timeout is None:
                timeout = DEFAULT_SEQUENTIAL_TIMEOUT
            if timeout is not None:
                timeouts[group] = timeout
        hop, request_uri = target_of(route)
        branches.append(Branch(hop, request_uri, route, group))
    return branches, timeouts
