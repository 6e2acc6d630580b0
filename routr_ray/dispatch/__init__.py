"""Message Dispatcher logic, pure (no Ray, no gRPC I/O): matchFunc evaluator, processor selection,
middleware chain and the mapping of failures to SIP answers. See docs/matchfunc.md."""

from routr_ray.dispatch.core import DispatchCore, ProcessorCall
from routr_ray.dispatch.errors import (
    DEFAULT_RETRY_AFTER_SECONDS,
    is_answerable,
    method_not_allowed,
    respond,
    server_internal_error,
    service_unavailable,
)
from routr_ray.dispatch.matchfunc import MatchFunc, MatchFuncError, MatchFuncRuntimeError, compile_match_func
from routr_ray.dispatch.matching import (
    PROCESSOR_METADATA_KEY,
    DispatchConfigError,
    ProcessorSpec,
    Route,
    Router,
    stamp_processor,
)
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain, MiddlewareFailed, PreResult

__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS", "PROCESSOR_METADATA_KEY", "DispatchConfigError", "DispatchCore", "MatchFunc",
    "MatchFuncError", "MatchFuncRuntimeError", "Middleware", "MiddlewareChain", "MiddlewareFailed", "PreResult",
    "ProcessorCall", "ProcessorSpec", "Route", "Router", "compile_match_func", "is_answerable",
    "method_not_allowed", "respond", "server_internal_error", "service_unavailable", "stamp_processor",
]
