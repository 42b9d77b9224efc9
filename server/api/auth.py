"""Optional bearer-token check for every call except health checks (probes carry no token).

The scheme name is case-insensitive (RFC 7235: `Bearer`, `bearer`, `BEARER`); the token
is compared in constant time. A refused call is logged as one JSON line with the method,
the peer and why (missing, wrong scheme, wrong token), never the token itself.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import grpc

from .. import jsonlog

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def _abort_handler(like: Any, method: str, message: str) -> Any:
    """A handler of the same streaming shape as `like` that logs and fails with UNAUTHENTICATED."""

    def refuse(context: grpc.ServicerContext) -> None:
        jsonlog.log(logging.WARNING, "auth failed", method=method, peer=context.peer(), reason=message)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def unary_req(request: Any, context: grpc.ServicerContext) -> Any:
        refuse(context)

    def stream_req(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        refuse(context)

    req_ser = like.request_deserializer if like else None
    resp_ser = like.response_serializer if like else None
    if like is None or not (like.request_streaming or like.response_streaming):
        return grpc.unary_unary_rpc_method_handler(unary_req, req_ser, resp_ser)
    if like.request_streaming and like.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream_req, req_ser, resp_ser)
    if like.request_streaming:
        return grpc.stream_unary_rpc_method_handler(stream_req, req_ser, resp_ser)
    return grpc.unary_stream_rpc_method_handler(unary_req, req_ser, resp_ser)


def check_authorization(value: str, expected: bytes) -> str | None:
    """None when `value` is `Bearer <expected>` (scheme in any case), else the reason to refuse."""
    if not value:
        return "authorization: missing bearer token"
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return "authorization: expected the Bearer scheme"
    if not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected):
        return "authorization: wrong bearer token"
    return None


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = token.encode("utf-8", "surrogateescape")

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return continuation(handler_call_details)
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
                break
        reason = check_authorization(given, self._expected)
        if reason is None:
            return continuation(handler_call_details)
        return _abort_handler(continuation(handler_call_details), method, reason)
