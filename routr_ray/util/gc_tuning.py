"""Garbage-collector settings for a long-running hot-path process: the EdgePort (opt-in: ``EdgePortOptions.tune_gc``;
on in the EdgePort actor), the processor replicas and the Location shards (after their start-up).

Per-message objects are almost all freed by reference counting; what the cyclic collector spends its time on is
re-scanning the long-lived objects (modules, protobuf descriptors, config, Connect's resource index) on every gen-2 pass and running gen-0
passes every 700 allocations. ``gc.freeze()`` after start-up moves everything alive into a permanent generation
the collector never scans, and a larger gen-0 threshold makes passes rarer. Measured with
benchmarks/bench_edgeport.py: about 20% less CPU per REGISTER round trip. The cost is that cyclic garbage waits
for up to ``gen0_threshold`` allocations before it is found (bounded).
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

DEFAULT_GEN0_THRESHOLD = 20_000


def tune_gc(gen0_threshold: int = DEFAULT_GEN0_THRESHOLD) -> tuple[int, int, int]:
    """Freeze what is alive now and raise the gen-0 threshold (never lowers it); returns the new thresholds."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, gen0_threshold), gen1, gen2)
    return gc.get_threshold()
