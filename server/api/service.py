"""The hermes.v1.Simulator gRPC service: each unary RPC and each stream command runs one
handler from the Api table, with the same checks, drain accounting and hooks.

Every command gets a `CallContext` that knows when its caller has gone (cancelled,
deadline passed: nothing is applied) and when a long call should stop early (client
gone, deadline near, the per-call wall budget `max_call_seconds` spent, draining).
Sessions created on a Session stream without `keep` are closed when the stream
ends, however it ends (clean close, client killed, connection cut).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from hermes.v1 import simulator_pb2

from .. import jsonlog
from ..config import ServerConfig
from ..errors import ApiError
from ..hooks import Hooks
from ..lifecycle import Lifecycle
from . import COMMAND_KEYS, SERVICE, STREAM_METHOD, Api
from .base import CallContext

DEADLINE_MARGIN_S = 0.25  # a long Advance returns early when its deadline is this close


class Undecodable:
    """Stands for a request that protobuf could not parse (too deeply nested, malformed), so the
    call answers INVALID_ARGUMENT instead of grpc's INTERNAL "Exception deserializing request!"."""

    def __init__(self, message_name: str, reason: str) -> None:
        self.error = ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                              f"request: cannot decode {message_name} ({reason})")


def decoder(cls: Any) -> Callable[[bytes], Any]:
    """A request deserializer that turns a message protobuf cannot parse into an `Undecodable`."""
    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, RecursionError) as exc:
            return Undecodable(cls.DESCRIPTOR.name, str(exc) or type(exc).__name__)

    return decode


class SimulatorService:
    def __init__(self, api: Api, lifecycle: Lifecycle, hooks: Hooks, config: ServerConfig | None = None) -> None:
        self.api = api
        self.lifecycle = lifecycle
        self.hooks = hooks
        self.config = config or api.config
        self.table = api.table()
        self.rpc_names = {key: name for name, key in COMMAND_KEYS.items()}

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {}
        for method in SERVICE.methods:
            req_cls = GetMessageClass(method.input_type)
            resp_cls = GetMessageClass(method.output_type)
            if method.name == STREAM_METHOD:
                handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                    self.session_stream, decoder(req_cls), resp_cls.SerializeToString)
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method.name), decoder(req_cls), resp_cls.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)

    # ------------------------------------------------------------ one command

    def run(self, key: str, request: Any, call: CallContext) -> Any:
        """Run one command; raises ApiError (internal failures become INTERNAL)."""
        if isinstance(request, Undecodable):
            raise request.error
        try:
            with self.lifecycle.call(key):
                call.check_live()
                return self.table[key](request, call)
        except ApiError as err:
            if err.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                jsonlog.log(logging.INFO, "call abandoned", command=key, code=err.code.name)
            raise
        except Exception as exc:
            logging.getLogger(jsonlog.LOGGER_NAME).exception("internal error",
                                                             extra={"fields": {"command": key}})
            raise ApiError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}") from exc

    def _call_context(self, context: grpc.ServicerContext,
                      claim: Callable[[str], None] | None = None) -> CallContext:
        """The checks of one command, its wall budget counted from now."""
        t0 = time.monotonic()
        budget = self.config.max_call_seconds

        def gone() -> ApiError | None:
            left = context.time_remaining()
            if left is not None and left <= 0:
                return ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "call: its deadline passed; nothing was applied")
            if not context.is_active():
                return ApiError(grpc.StatusCode.CANCELLED, "call: cancelled by the client; nothing was applied")
            return None

        def interrupted() -> bool:
            if self.lifecycle.draining or not context.is_active():
                return True
            if budget and time.monotonic() - t0 > budget:
                return True
            left = context.time_remaining()
            return left is not None and left < DEADLINE_MARGIN_S

        return CallContext(interrupted=interrupted, gone=gone, claim=claim)

    # ------------------------------------------------------------ unary

    def _unary(self, method_name: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        key = COMMAND_KEYS[method_name]

        def behavior(request: Any, context: grpc.ServicerContext) -> Any:
            t0 = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return self.run(key, request, self._call_context(context))
            except ApiError as err:
                code = err.code
                context.abort(err.code, err.message)
            finally:
                self.hooks.rpc(method_name, code.name, time.perf_counter() - t0)

        return behavior

    # ------------------------------------------------------------ stream

    def session_stream(self, commands: Iterator[simulator_pb2.Command],
                       context: grpc.ServicerContext) -> Iterator[simulator_pb2.Reply]:
        """One Reply per Command, in order; errors in-band so the stream survives.

        Sessions created here without `keep` close when the stream ends: the generator's
        `finally` covers a clean end, the RPC callback a client that died mid-call.
        """
        owned = _StreamSessions(self.api.manager)
        context.add_callback(owned.release)
        try:
            yield from self._stream_replies(commands, context, owned)
        except grpc.RpcError:  # the client went away between commands
            pass
        finally:
            owned.release()

    def _stream_replies(self, commands: Iterator[simulator_pb2.Command], context: grpc.ServicerContext,
                        owned: _StreamSessions) -> Iterator[simulator_pb2.Reply]:
        for cmd in commands:
            t0 = time.perf_counter()
            reply = simulator_pb2.Reply()
            code = grpc.StatusCode.OK
            key = None
            if isinstance(cmd, Undecodable):
                code = grpc.StatusCode.INVALID_ARGUMENT
                reply.status.code, reply.status.message = code.value[0], cmd.error.message
            else:
                reply.id = cmd.id
                key = cmd.WhichOneof("command")
                if key is None:
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    reply.status.code, reply.status.message = code.value[0], "command: missing (set one command)"
                else:
                    try:
                        result = self.run(key, getattr(cmd, key), self._call_context(context, owned.claim))
                        getattr(reply, key).CopyFrom(result)
                    except ApiError as err:
                        code = err.code
                        reply.status.code, reply.status.message = code.value[0], err.message
            self.hooks.rpc(f"Session.{self.rpc_names.get(key, 'Unknown')}", code.name, time.perf_counter() - t0)
            yield reply


class _StreamSessions:
    """The sessions one Session stream created (without `keep`); all closed once it ends."""

    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._ended = False

    def claim(self, session_id: str) -> None:
        with self._lock:
            ended = self._ended
            if not ended:
                self._ids.append(session_id)
        if ended:  # the stream ended while the command ran
            self._manager.close_quietly(session_id, reason="stream_ended")

    def release(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            ids, self._ids = self._ids, []
        for sid in ids:
            self._manager.close_quietly(sid, reason="stream_ended")
