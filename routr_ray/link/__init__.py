"""The internal data plane: length-prefixed frames over TCP between routr-ray's own processes.

A Ray actor call costs about 1 ms of CPU on each side (``../shared/reference/ray.md`` §0), which is most of the
cost of a SIP transaction. So the hot hops (EdgePort -> processor replica, Connect -> Location shard) carry their
batches over a plain, pipelined TCP connection instead, and Ray stays the control plane: it places, starts,
restarts and scales the actors, and a small registry actor (``routr_ray/actors/links.py``) tells each client where
the servers listen and which token they want. See docs/link.md.

* :mod:`.frames`: the frame format and list packing (pure, stdlib only);
* :mod:`.server`: :class:`LinkServer`, an asyncio server that answers each call frame with its handler's bytes;
* :mod:`.client`: :class:`LinkClient`, one pipelined connection, and :class:`LinkPool`, the least-busy of many.
"""

from .client import LinkClient, LinkConnectError, LinkError, LinkPool
from .frames import Endpoint, FrameError, pack_list, unpack_list
from .server import LinkServer

__all__ = ["Endpoint", "FrameError", "LinkClient", "LinkConnectError", "LinkError", "LinkPool", "LinkServer",
           "pack_list", "unpack_list"]
