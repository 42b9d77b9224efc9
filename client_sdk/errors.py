"""Typed errors: every failed call raises a `HermesError` subclass carrying the gRPC code,
whether it failed as a unary RPC or in-band on the Session stream."""

from __future__ import annotations

import grpc


class HermesError(Exception):
    """A call to the HERMES server failed. `code` is the grpc.StatusCode, `message` names the field."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class InvalidArgument(HermesError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(HermesError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HermesError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(HermesError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(HermesError):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhausted(HermesError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(HermesError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(HermesError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(HermesError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Internal(HermesError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[HermesError]] = {
    cls.code: cls for cls in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, OutOfRange,
                              ResourceExhausted, Unauthenticated, Unavailable, DeadlineExceeded, Internal)
}
_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def error_for(code: grpc.StatusCode, message: str) -> HermesError:
    cls = _BY_CODE.get(code, HermesError)
    return cls(message, code)


def from_rpc_error(err: grpc.RpcError) -> HermesError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return error_for(code, details or "")


def from_status(code: int, message: str) -> HermesError:
    """From the in-band hermes.v1.Status of a stream reply."""
    return error_for(_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN), message)
