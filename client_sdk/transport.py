"""Two ways to carry one command: a unary RPC, or a round trip on the bidirectional stream.

Both take a command key (the `Command` oneof field, e.g. "advance") and its
request message and return the reply message, raising `HermesError` on failure,
so `Session` does not care which one it uses.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import grpc

from hermes.v1 import simulator_pb2, simulator_pb2_grpc

from .errors import HermesError, from_rpc_error, from_status

_SERVICE = simulator_pb2.DESCRIPTOR.services_by_name["Simulator"]
_COMMAND_FIELDS = {f.message_type.full_name: f.name
                   for f in simulator_pb2.Command.DESCRIPTOR.oneofs_by_name["command"].fields}
# command key -> unary RPC name ("advance" -> "Advance")
RPC_NAMES = {_COMMAND_FIELDS[m.input_type.full_name]: m.name
             for m in _SERVICE.methods if m.input_type.full_name in _COMMAND_FIELDS}
Metadata = Sequence[tuple[str, str]]


class UnaryTransport:
    def __init__(self, stub: simulator_pb2_grpc.SimulatorStub, metadata: Metadata,
                 timeout: float | None = None) -> None:
        self._methods = {key: getattr(stub, name) for key, name in RPC_NAMES.items()}
        self._metadata = tuple(metadata)
        self.timeout = timeout

    def call(self, key: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return self._methods[key](request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def close(self) -> None:
        pass


_END = object()


class StreamTransport:
    """Lockstep use of one `Session` stream: send a command, wait for its reply.

    Thread-safe (one command at a time). If the stream itself breaks, every later
    call raises the error that broke it.
    """

    def __init__(self, stub: simulator_pb2_grpc.SimulatorStub, metadata: Metadata) -> None:
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._replies = stub.Session(iter(self._outbox.get, _END), metadata=tuple(metadata))
        self._lock = threading.Lock()
        self._next_id = 0
        self._broken: HermesError | None = None

    def call(self, key: str, request: Any, timeout: float | None = None) -> Any:
        with self._lock:
            if self._broken is not None:
                raise self._broken
            self._next_id += 1
            cmd = simulator_pb2.Command(id=self._next_id)
            getattr(cmd, key).CopyFrom(request)
            self._outbox.put(cmd)
            try:
                reply = next(self._replies)
            except grpc.RpcError as err:
                self._broken = from_rpc_error(err)
                raise self._broken from None
            except StopIteration:
                self._broken = HermesError("the server closed the Session stream", grpc.StatusCode.UNAVAILABLE)
                raise self._broken from None
        if reply.status.code:
            raise from_status(reply.status.code, reply.status.message)
        return getattr(reply, key)

    def close(self) -> None:
        self._outbox.put(_END)
        try:
            for _ in self._replies:  # drain until the server ends the stream
                pass
        except grpc.RpcError:
            pass
