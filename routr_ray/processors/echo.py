"""The echo processor: answers every request with 200 OK and passes responses through unchanged.

Routr's ``mods/echo`` (routr.md §1.14) as the smallest example of the SDK. It never converts the message
from the protobuf, so it also measures the bare cost of the processor hop. ACK is absorbed (never answered,
RFC 3261 §17.1.1.3).
"""

from __future__ import annotations

from routr_ray.processors.sdk import Context, MessageResponse, Processor


class EchoProcessor(Processor):
    name = "echo"

    def handle(self, ctx: Context) -> MessageResponse:
        return ctx.ok()


__all__ = ["EchoProcessor"]
