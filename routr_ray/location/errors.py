"""Errors raised by the Location service, carrying a gRPC-style status code.

The codes are named after `grpc.StatusCode` members so the gRPC layer maps them with
`grpc.StatusCode[error.code.name]`; this package itself does not import grpc.
"""

from __future__ import annotations

import enum


class LocationErrorCode(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # bad AOR, max_contacts exceeded -> the processor answers 403/400
    NOT_FOUND = "NOT_FOUND"  # no route (only the gRPC layer uses it: find_routes returns [])
    UNAVAILABLE = "UNAVAILABLE"  # the store (Redis) cannot be reached -> the processor answers 503
    FAILED_PRECONDITION = "FAILED_PRECONDITION"  # the AOR was sent to a shard that does not own it


class LocationError(Exception):
    """A Location failure with a status code and a message safe to show a caller."""

    def __init__(self, code: LocationErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"LocationError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> LocationError:
    return LocationError(LocationErrorCode.INVALID_ARGUMENT, message)


def unavailable(message: str) -> LocationError:
    return LocationError(LocationErrorCode.UNAVAILABLE, message)
