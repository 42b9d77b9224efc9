"""The hermes.v1.Simulator gRPC service: each unary RPC and each stream command runs one
handler from the Api table, with the same checks, drain accounting and hooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message_factory import GetMessageClass

from hermes.v1 import simulator_pb2

from .. import jsonlog
from ..errors import ApiError
from ..hooks import Hooks
from ..lifecycle import Lifecycle
from . import COMMAND_KEYS, SERVICE, STREAM_METHOD, Api
from .base import CallContext

DEADLINE_MARGIN_S = 0.25  # a long Advance returns early when its deadline is this close


class SimulatorService:
    def __init__(self, api: Api, lifecycle: Lifecycle, hooks: Hooks) -> None:
        self.api = api
        self.lifecycle = lifecycle
        self.hooks = hooks
        self.table = api.table()
        self.rpc_names = {key: name for name, key in COMMAND_KEYS.items()}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method in SERVICE.methods:
            req_cls = GetMessageClass(method.input_type)
            resp_cls = GetMessageClass(method.output_type)
            if method.name == STREAM_METHOD:
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                    self.session_stream, req_cls.FromString, resp_cls.SerializeToString)
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method.name), req_cls.FromString, resp_cls.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    # ------------------------------------------------------------ one command

    def run(self, key: str, request: Any, interrupted: Callable[[], bool]) -> Any:
        """Run one command; raises ApiError (internal failures become INTERNAL)."""
        try:
            with self.lifecycle.call(key):
                return self.table[key](request, CallContext(interrupted))
        except ApiError:
            raise
        except Exception as exc:
            logging.getLogger(jsonlog.LOGGER_NAME).exception("internal error",
                                                             extra={"fields": {"command": key}})
            raise ApiError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}") from exc

    def _interrupted(self, context: grpc.ServicerContext) -> Callable[[], bool]:
        def check() -> bool:
            if self.lifecycle.draining:
                return True
            left = context.time_remaining()
            return left is not None and left < DEADLINE_MARGIN_S
        return check

    # ------------------------------------------------------------ unary

    def _unary(self, method_name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        key = COMMAND_KEYS[method_name]

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return self.run(key, request, self._interrupted(context))
            except ApiError as err:
                code = err.code
                context.abort(err.code, err.message)
            finally:
                self.hooks.rpc(method_name, code.name, time.perf_counter() - t0)

        return behavior

    # ------------------------------------------------------------ stream

    def session_stream(self, commands: Iterator[simulator_pb2.Command],
                       context: grpc.ServicerContext) -> Iterator[simulator_pb2.Reply]:
        """One Reply per Command, in order; errors in-band so the stream survives."""
        interrupted = self._interrupted(context)
        for cmd in commands:
            t0 = time.perf_counter()
            key = cmd.WhichOneof("command")
            reply = simulator_pb2.Reply(id=cmd.id)
            code = grpc.StatusCode.OK
            if key is None:
                code = grpc.StatusCode.INVALID_ARGUMENT
                reply.status.code, reply.status.message = code.value[0], "command: missing (set one command)"
            else:
                try:
                    getattr(reply, key).CopyFrom(self.run(key, getattr(cmd, key), interrupted))
                except ApiError as err:
                    code = err.code
                    reply.status.code, reply.status.message = code.value[0], err.message
            self.hooks.rpc(f"Session.{self.rpc_names.get(key, 'Unknown')}", code.name, time.perf_counter() - t0)
            yield reply
