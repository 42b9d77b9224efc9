"""EstimateStep: the simulator's own step cost over the wire (unary and stream), no session;
bad input is rejected naming the field."""

from __future__ import annotations

import pytest

from client_sdk import Client, InvalidArgument
from hermes.v1 import estimate_pb2
from sim_engine import load_spec
from sim_engine.spec import build_client_parts

H100_8B = {"hardware": "H100-SXM", "model": "Llama-3.1-8B"}


def engine_cost(client: dict, prefills: list[tuple[int, int]], decodes: list[int]):
    """What a session's client with this entry would charge for the step (engine profile included)."""
    cs = load_spec({"clients": [{"id": "x", **client}], "workload": {}}).clients[0]
    model, capacity = build_client_parts(cs, "clients[0]")
    return model.step(prefills, len(decodes), sum(decodes)), capacity


@pytest.mark.parametrize("client_doc, prefills, decodes", [
    (H100_8B, [(0, 512), (256, 1024)], [1000] * 32),
    ({"hardware": "A100-80GB", "model": "Llama-3.1-70B", "tp": 4, "perf": {"kind": "analytical"}}, [], [4000] * 8),
    ({"hardware": "L40S", "model": "Llama-3.1-8B", "scheduler": {"gpu_memory_utilization": 0.8}}, [(0, 2048)], []),
    ({**H100_8B, "engine": "trtllm"}, [(0, 512)], [1000] * 32),
    ({**H100_8B, "engine": "legacy-2023", "dtype": "fp8"}, [(0, 512)], [1000] * 32),
])
def test_reply_is_the_engines_own_step_cost(client: Client, client_doc: dict, prefills: list, decodes: list) -> None:
    cost, capacity = engine_cost(client_doc, prefills, decodes)
    r = client.estimate_step(client_doc, prefills=prefills, decode_context_tokens=decodes)
    assert (r.time_s, r.compute_s, r.memory_s, r.comm_s, r.energy_j) == (
        cost.time_s, cost.compute_s, cost.memory_s, cost.comm_s, cost.energy_j)
    assert r.compute_bound == cost.compute_bound and r.kv_capacity_tokens == capacity


def test_the_engine_profile_changes_the_cost(client: Client) -> None:
    times = {e: client.estimate_step({**H100_8B, "engine": e}, decode_context_tokens=[1000] * 32).time_s
             for e in ("vllm", "legacy-2023")}
    assert times["vllm"] != times["legacy-2023"]


def test_more_work_takes_longer(client: Client) -> None:
    small = client.estimate_step(H100_8B, decode_context_tokens=[1000] * 8).time_s
    big = client.estimate_step(H100_8B, decode_context_tokens=[1000] * 64).time_s
    longer = client.estimate_step(H100_8B, decode_context_tokens=[8000] * 64).time_s
    assert small < big < longer


def test_the_stream_carries_it_too(client: Client) -> None:
    with client.create_session("hetero-demo", stream=True) as s:
        req = estimate_pb2.EstimateStepRequest(decode_context_tokens=[100, 200])
        req.client.update(H100_8B)
        reply = s._t.call("estimate_step", req)
    assert reply.time_s == client.estimate_step(H100_8B, decode_context_tokens=[100, 200]).time_s


@pytest.mark.parametrize("client_doc, prefills, decodes, field", [
    ({"hardware": "H999", "model": "Llama-3.1-8B"}, [], [5], "client.hardware"),
    ({"hardware": "H100-SXM", "model": "Llama-3.1-8B", "tp": 3}, [], [5], "client.tp"),
    ({"hardware": "H100-SXM", "model": "Llama-3.1-8B", "role": "embedding"}, [], [5], "client.role"),
    ({"hardware": "H100-SXM", "model": "Llama-3.1-8B", "replicas": 2}, [], [5], "client.replicas"),
    ({"hardware": "H100-SXM", "model": "Llama-3.1-8B", "colour": "red"}, [], [5], "client.colour"),
    (H100_8B, [(0, 0)], [], "prefills[0].new_tokens"),
    (H100_8B, [(-1, 10)], [], "prefills[0].cached_tokens"),
    (H100_8B, [], [5, -2], "decode_context_tokens[1]"),
    (H100_8B, [], [], "prefills"),
])
def test_bad_input_names_the_field(client: Client, client_doc: dict, prefills: list, decodes: list,
                                   field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        client.estimate_step(client_doc, prefills=prefills, decode_context_tokens=decodes)
    assert str(err.value).split(": ", 1)[1].startswith(f"{field}:"), str(err.value)
