"""routr_ray/util/priority.py: a background thread's nice value goes up, the rest of the process keeps its own."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from routr_ray.util.priority import lower_this_thread


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_only_the_calling_thread_is_lowered() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int] = {}

    def background() -> None:
        seen["ok"] = lower_this_thread(5)
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen["ok"] is True
    assert seen["nice"] == min(19, before + 5)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # this thread untouched
