"""A stand-in for a Gateway API implementation on loopback: a gRPC proxy that forwards each
hermes.v1.Simulator call, as raw bytes, to a backend chosen by the value of one request header
(deploy/k8s-scale-out/grpcroute.yaml's exact-match rules), or round robin over the default
backends when the header is absent. It records what it routed, so a test can see the header."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc

from hermes.v1 import simulator_pb2

SERVICE = simulator_pb2.DESCRIPTOR.services_by_name["Simulator"]
STREAMING = {m.name for m in SERVICE.methods if m.client_streaming}
FORWARDED = ("authorization",)


class HeaderRouter(grpc.GenericRpcHandler):
    def __init__(self, header: str, by_value: dict[str, str], default: Sequence[str]) -> None:
        self.header = header
        self.by_value = by_value  # header value -> backend address
        self._default = itertools.cycle(default)
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str, str]] = []  # (method, header value or "", backend)

    def _backend(self, value: str) -> str:
        if value:
            return self.by_value.get(value, "")
        with self._lock:
            return next(self._default)

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                self._channels[address] = grpc.insecure_channel(address)
            return self._channels[address]

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        prefix = f"/{SERVICE.full_name}/"
        if not details.method.startswith(prefix):
            return None
        name = details.method[len(prefix):]
        metadata = tuple((k, v) for k, v in details.invocation_metadata if k in FORWARDED or k == self.header)
        value = dict(metadata).get(self.header, "")
        backend = self._backend(value)
        with self._lock:
            self.calls.append((name, value, backend))
        if not backend:  # a header value no rule matches: what a gateway answers with no route
            return grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: ctx.abort(grpc.StatusCode.UNIMPLEMENTED, f"no route for {self.header}={value}"))
        channel = self._channel(backend)
        if name in STREAMING:
            upstream = channel.stream_stream(details.method)

            def stream(requests: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
                try:
                    yield from upstream(requests, metadata=metadata)
                except grpc.RpcError as err:
                    ctx.abort(err.code(), err.details())

            return grpc.stream_stream_rpc_method_handler(stream)
        unary_upstream = channel.unary_unary(details.method)

        def unary(request: bytes, ctx: grpc.ServicerContext) -> Any:
            try:
                return unary_upstream(request, metadata=metadata)
            except grpc.RpcError as err:
                ctx.abort(err.code(), err.details())

        return grpc.unary_unary_rpc_method_handler(unary)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


def start_gateway(router: HeaderRouter) -> tuple[grpc.Server, str]:
    """Serve `router` on a free loopback port; (server, "127.0.0.1:PORT")."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), handlers=(router,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
