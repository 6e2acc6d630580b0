"""A background thread's CPU priority, lowered (Linux: the nice value is per thread).

The config watchers of ``routr-ray run`` reload the whole config directory when a file changes (the resources and
their validation: seconds of CPU with thousands of users). In the driver process they compete with nothing on the
SIP path directly, but on a small node every CPU-second they take while calls run is a second the EdgePort and the
replicas wait (issue 18: measured with ``benchmarks/bench_chaos.py``, an edited ``edgeport.yaml`` failed calls
while a deploy of the same config did not). Niceness only goes up here: no privilege needed.
"""

from __future__ import annotations

import os
import threading

BACKGROUND_NICENESS = 10


def lower_this_thread(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Raise the calling thread's nice value by ``niceness`` (Linux ``setpriority`` on the thread id); False where
    that is not possible (another OS, a sandbox): the thread then runs as before."""
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
    except (AttributeError, OSError):
        return False
    return True
