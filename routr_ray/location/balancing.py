"""Route choice for `backend:` AORs.

Both algorithms take the candidates in a stable order (by route id, not by registration time, so a
re-register does not reshuffle the rotation) and the AOR's counter, which the service advances
once per pick and persists, so the rotation is fair across every caller of the shard.
"""

from __future__ import annotations

from collections.abc import Sequence

from routr_ray.location.routes import Route
from routr_ray.proto.gen import location_pb2

Algorithm = location_pb2.FindRoutesRequest.Backend.Algorithm
ROUND_ROBIN = location_pb2.FindRoutesRequest.Backend.ROUND_ROBIN
LEAST_SESSIONS = location_pb2.FindRoutesRequest.Backend.LEAST_SESSIONS


def pick_round_robin(candidates: Sequence[Route], counter: int) -> Route:
    return candidates[counter % len(candidates)]


def pick_least_sessions(candidates: Sequence[Route], counter: int) -> Route:
    """The route with the lowest reported `session_count`; ties rotate with the counter.

    A negative count means "never reported" (Routr's -1) and ranks after every reported count:
    an idle backend that reports 0 is preferred to one we know nothing about. When nobody reports,
    all tie and the choice is plain round-robin rather than always the first route.
    """
    reported = [route for route in candidates if route.session_count >= 0]
    pool = reported or list(candidates)
    lowest = min(route.session_count for route in pool)
    tied = [route for route in pool if route.session_count == lowest]
    return tied[counter % len(tied)]


def pick(algorithm: int, candidates: Sequence[Route], counter: int) -> Route:
    if algorithm == LEAST_SESSIONS:
        return pick_least_sessions(candidates, counter)
    return pick_round_robin(candidates, counter)
