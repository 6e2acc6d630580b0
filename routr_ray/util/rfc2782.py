"""RFC 2782 target selection: lowest priority first; within a priority, a random order weighted by weight.

Used for DNS SRV records (``edge/locate.py``, RFC 3263 §4.4) and for a Trunk's outbound ``uris`` (Connect picks
the URI of each call this way: a 3:1 weight is a 3:1 load share, and the others follow as failover targets).

RFC 2782 "Usage rules": order the records of one priority with those of weight 0 first, then repeatedly sum the
weights of the remaining records, pick a uniform random number in [0, sum] and take the first record whose
running sum is at least that number. Records of weight 0 are then chosen only rarely (when the number is 0) and
come out last in practice, unless all weights are 0, which makes the order uniform.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from itertools import groupby
from typing import TypeVar

__all__ = ["weighted_order"]

T = TypeVar("T")


def weighted_order(items: Iterable[T], *, priority: Callable[[T], int], weight: Callable[[T], int],
                   rng: random.Random | None = None) -> list[T]:
    """``items`` in the order RFC 2782 says to try them."""
    draw = rng or random
    result: list[T] = []
    ordered = sorted(items, key=priority)
    for _, group in groupby(ordered, key=priority):
        remaining = sorted(group, key=lambda item: weight(item) != 0)  # weight 0 first, as the RFC says
        while remaining:
            total = sum(max(0, weight(item)) for item in remaining)
            if total == 0:
                index = draw.randrange(len(remaining))
            else:
                pick = draw.uniform(0, total)
                running = 0
                index = len(remaining) - 1
                for position, item in enumerate(remaining):
                    running += max(0, weight(item))
                    if running >= pick and (weight(item) > 0 or pick == 0):
                        index = position
                        break
            result.append(remaining.pop(index))
    return result
