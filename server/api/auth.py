"""Optional bearer-token check for every call except health checks (probes carry no token)."""

from __future__ import annotations

import hmac
from typing import Any

import grpc

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


def _abort_handler(like: Any, message: str) -> Any:
    """A handler of the same streaming shape as `like` that fails with UNAUTHENTICATED."""

    def unary_req(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    def stream_req(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    req_ser = like.request_deserializer if like else None
    resp_ser = like.response_serializer if like else None
    if like is None or not (like.request_streaming or like.response_streaming):
        return grpc.unary_unary_rpc_method_handler(unary_req, req_ser, resp_ser)
    if like.request_streaming and like.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream_req, req_ser, resp_ser)
    if like.request_streaming:
        return grpc.stream_unary_rpc_method_handler(stream_req, req_ser, resp_ser)
    return grpc.unary_stream_rpc_method_handler(unary_req, req_ser, resp_ser)


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if handler_call_details.method.startswith(EXEMPT_PREFIXES):
            return continuation(handler_call_details)
        given = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
                break
        if given and hmac.compare_digest(given.encode(), self._expected):
            return continuation(handler_call_details)
        reason = "authorization: missing bearer token" if not given else "authorization: wrong bearer token"
        return _abort_handler(continuation(handler_call_details), reason)
