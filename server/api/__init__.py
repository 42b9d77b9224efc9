"""All commands in one table, keyed like the `Command` oneof field that carries each
unary RPC's request (CreateSession -> "create_session")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hermes.v1 import simulator_pb2

from .base import CallContext
from .estimate import EstimateApi
from .sessions import SessionApi
from .stepping import SteppingApi

SERVICE = simulator_pb2.DESCRIPTOR.services_by_name["Simulator"]
STREAM_METHOD = "Session"
_COMMAND_FIELDS = {f.message_type.full_name: f.name
                   for f in simulator_pb2.Command.DESCRIPTOR.oneofs_by_name["command"].fields}
# unary RPC name -> command key
COMMAND_KEYS = {m.name: _COMMAND_FIELDS[m.input_type.full_name] for m in SERVICE.methods if m.name != STREAM_METHOD}

Handler = Callable[[Any, CallContext], Any]


class Api(SessionApi, SteppingApi, EstimateApi):
    """Every command handler; `table()` maps each command key to its bound method."""

    def table(self) -> dict[str, Handler]:
        return {key: getattr(self, key) for key in COMMAND_KEYS.values()}
