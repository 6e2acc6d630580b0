"""Processors for tests and demos (not for production).

:class:`SlowEchoProcessor` answers like :class:`~routr_ray.processors.echo.EchoProcessor` after ``delay`` seconds
of asyncio sleep: it makes in-flight requests pile up at a processor deployment, so Serve autoscaling has
load to react to (tests/cluster/test_autoscaling.py) without burning CPU.
"""

from __future__ import annotations

import asyncio

from routr_ray.processors.sdk import Context, MessageResponse, Processor


class SlowEchoProcessor(Processor):
    name = "slow-echo"

    def __init__(self, delay: float = 0.2) -> None:
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.delay = delay

    async def handle(self, ctx: Context) -> MessageResponse:
        await asyncio.sleep(self.delay)
        return ctx.ok()


__all__ = ["SlowEchoProcessor"]
