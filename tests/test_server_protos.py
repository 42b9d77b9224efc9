"""The wire contract: committed stubs match proto/, and every unary RPC is also a stream command."""

from __future__ import annotations

import subprocess
import sys

import pytest
from server_fixtures import ROOT, env_with_root


@pytest.mark.slow  # runs protoc in a subprocess
def test_committed_stubs_are_fresh() -> None:
    proc = subprocess.run([sys.executable, "scripts/gen_protos.py", "--check"], cwd=ROOT,
                          env=env_with_root(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_unary_rpc_is_a_stream_command_with_a_matching_reply() -> None:
    from hermes.v1 import simulator_pb2

    service = simulator_pb2.DESCRIPTOR.services_by_name["Simulator"]
    commands = {f.name: f.message_type.full_name
                for f in simulator_pb2.Command.DESCRIPTOR.oneofs_by_name["command"].fields}
    replies = {f.name: f.message_type.full_name
               for f in simulator_pb2.Reply.DESCRIPTOR.oneofs_by_name["reply"].fields}
    unary = [m for m in service.methods if m.name != "Session"]
    assert len(unary) == len(commands) == len(replies)
    for m in unary:
        key = next(k for k, v in commands.items() if v == m.input_type.full_name)
        assert replies[key] == m.output_type.full_name, m.name


def test_server_dispatch_table_covers_every_command() -> None:
    from hermes.v1 import simulator_pb2
    from server.api import Api

    keys = {f.name for f in simulator_pb2.Command.DESCRIPTOR.oneofs_by_name["command"].fields}
    assert set(Api.table(Api.__new__(Api))) == keys


def test_wire_messages_carry_every_field_the_engine_reports() -> None:
    """When the engine's state or decision types grow a field, the proto must grow it too."""
    import dataclasses

    import sim_engine
    from hermes.v1 import common_pb2

    pairs = [(sim_engine.ClientState, common_pb2.ClientState, {}),
             (sim_engine.ClusterState, common_pb2.ClusterState, {"time_ns": "now_ns"}),
             (sim_engine.Decision, common_pb2.Decision, {})]
    for engine_cls, msg_cls, renamed in pairs:
        engine_fields = {renamed.get(f.name, f.name) for f in dataclasses.fields(engine_cls)}
        assert engine_fields <= set(msg_cls.DESCRIPTOR.fields_by_name), engine_cls.__name__
