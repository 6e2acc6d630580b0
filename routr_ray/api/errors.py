"""What the API answers when it refuses: a gRPC status code name and a message a person can act on.

Raised by the store, the validation and the authorisation; ``routr_ray/api/service.py`` turns it into the gRPC
status (the code names are grpc.StatusCode names, so this module needs no grpc import).
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def not_found(kind: str, ref: str) -> ApiError:
    return ApiError("NOT_FOUND", f"there is no {kind} with ref {ref!r}")


def already_exists(message: str) -> ApiError:
    return ApiError("ALREADY_EXISTS", message)


def precondition(message: str) -> ApiError:
    return ApiError("FAILED_PRECONDITION", message)


def denied(message: str) -> ApiError:
    return ApiError("PERMISSION_DENIED", message)


def unauthenticated(message: str) -> ApiError:
    return ApiError("UNAUTHENTICATED", message)


def unavailable(message: str) -> ApiError:
    return ApiError("UNAVAILABLE", message)
