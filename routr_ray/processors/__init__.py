"""Message Processors and the SDK to write them (DESIGN §5, docs/processors.md).

``Processor`` and ``Context`` (sdk), the response builders (``responses``), the alterations (``alterations``),
the ``EchoProcessor`` example and the standalone gRPC server (``server``, imported on demand: it needs grpc).
"""

from routr_ray.processors import alterations, responses
from routr_ray.processors.echo import EchoProcessor
from routr_ray.processors.sdk import (
    ACTION_METADATA_KEY,
    DROP_ACTION,
    Context,
    Processor,
    Result,
    drop,
    is_drop,
)

__all__ = [
    "ACTION_METADATA_KEY", "DROP_ACTION", "Context", "EchoProcessor", "Processor", "Result", "alterations", "drop",
    "is_drop", "responses",
]
