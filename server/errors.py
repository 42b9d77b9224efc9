"""One exception type for every failed call, and the map from engine errors to gRPC codes.

Handlers raise `ApiError`; the unary wrapper turns it into a gRPC status and
the stream loop into an in-band `Status`, so both paths report the same code
and message.
"""

from __future__ import annotations

import grpc

from sim_engine import errors as engine_errors


class ApiError(Exception):
    """A call failed with a gRPC status code and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {reason}")


def not_found(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, f"{field}: {reason}")


def out_of_range(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.OUT_OF_RANGE, f"{field}: {reason}")


def exhausted(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{field}: {reason}")


def precondition(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{field}: {reason}")


def already_exists(field: str, reason: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, f"{field}: {reason}")


# most specific first: SpecError is a ValueError like OutOfRangeError, so order matters
_ENGINE_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (engine_errors.UnknownReferenceError, grpc.StatusCode.NOT_FOUND),  # a SpecError naming a missing thing
    (engine_errors.SpecError, grpc.StatusCode.INVALID_ARGUMENT),
    (engine_errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (engine_errors.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (engine_errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (engine_errors.PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (engine_errors.LimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def from_engine(exc: BaseException, context: str = "") -> ApiError | None:
    """The ApiError for an engine exception, or None when it is not one of the engine's errors.

    `context` prefixes messages that do not already name a field (e.g. "requests").
    """
    for cls, code in _ENGINE_CODES:
        if isinstance(exc, cls):
            text = str(exc).strip("'\"") or cls.__name__
            if context and not isinstance(exc, engine_errors.SpecError):
                text = f"{context}: {text}"
            return ApiError(code, text)
    return None
