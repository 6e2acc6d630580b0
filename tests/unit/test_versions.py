"""routr_ray/util/versions.py: the long-poll behind the boards that replicas and EdgePorts follow."""

from __future__ import annotations

import asyncio

from routr_ray.util.versions import Versions


async def test_a_waiter_wakes_on_the_next_version_and_times_out_without_one() -> None:
    versions = Versions()
    assert await versions.wait_above(0, 0.0) is True  # already above: at once
    assert await versions.wait_above(1, 0.0) is False
    assert await versions.wait_above(1, 0.01) is False  # timeout
    waiter = asyncio.create_task(versions.wait_above(1, 5.0))
    await asyncio.sleep(0)
    assert await versions.bump() == 2
    assert await asyncio.wait_for(waiter, 1.0) is True
