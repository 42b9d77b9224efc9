"""The fleet's gateway listener: HTTP calls that run the spec's own multi-stage pipeline.

The spec is examples/specs/multistage-hetero.yaml: RAG (embed, IVF-PQ search, re-rank), model
routing, disaggregated prefill/decode, reasoning (2x thinking, 4 branches) and a guard stage.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fleet import FakeClock, FleetThread, get, metric, post

from server.fleet.app import fleet_spec
from server.fleet.pacer import Pacer
from sim_engine import RequestInput, Simulation, SpecError
from sim_engine.views import STAGE_GROUPS

ROOT = Path(__file__).resolve().parent.parent
MULTI = str(ROOT / "examples/specs/multistage-hetero.yaml")
MODEL = "Llama-3.1-8B"
# every stage group of the multistage pipeline; "decode" runs as "reasoning" (the reasoning shapes it)
GROUPS = {"rag", "route", "prefill", "reasoning", "generic"}


def stage_groups_run(sim: Simulation) -> dict[str, int]:
    st = sim.stage_records.arrays()
    groups, counts = np.unique(st["group"], return_counts=True)
    return {STAGE_GROUPS[g]: int(n) for g, n in zip(groups.tolist(), counts.tolist(), strict=True)}


def clients_run(sim: Simulation) -> set[str]:
    ids = [c.id for c in sim.clients]
    return {ids[i] for i in sim.stage_records.arrays()["client"].tolist() if i >= 0}


# ---------------------------------------------------------------- engine: pinned requests


def test_a_pinned_request_skips_the_router_and_an_unpinned_one_uses_it():
    sim = Simulation(fleet_spec("hetero-poisson"), record_events=True)  # least_loaded
    sim.inject([RequestInput(0, 1000, 500, pipeline="_fleet_direct", request_id=f"p{i}", client_id="h100-0")
                for i in range(4)] + [RequestInput(50_000_000, 100, 5, request_id="free")])
    sim.advance()
    records = sim.request_records()
    assert sim.completed == 5 and not sim.pending
    ids = [c.id for c in sim.clients]
    served = dict(zip(records["idx"].tolist(), [ids[c] for c in records["client"].tolist()], strict=True))
    assert [served[i] for i in range(4)] == ["h100-0"] * 4
    assert served[4] == "a100-0"  # least loaded: the pinned requests hold h100-0's KV (the first by order)


@pytest.mark.parametrize(("client_id", "why"), [("nope", "no LLM client"), ("", "no LLM client"),
                                                 (5, "no LLM client")])
def test_a_bad_pin_is_rejected_naming_the_field_and_adds_nothing(client_id, why):
    sim = Simulation(fleet_spec("hetero-demo"))
    with pytest.raises(SpecError) as e:
        sim.inject([RequestInput(0, 10, 2), RequestInput(0, 10, 2, client_id=client_id)])
    assert e.value.field == "requests[1].client_id" and why in str(e.value)
    assert sim.injected == 0


def test_a_pin_to_a_client_of_another_model_is_rejected():
    sim = Simulation(fleet_spec(MULTI))
    with pytest.raises(SpecError) as e:
        sim.inject([RequestInput(0, 10, 2, model=MODEL, client_id="big")])  # big serves the 70B
    assert e.value.field == "requests[0].client_id" and "Llama-3.1-70B" in str(e.value)


def test_a_pinned_request_on_a_failed_client_is_dropped_not_moved():
    sim = Simulation(fleet_spec("hetero-demo"), record_events=True)
    sim.change_cluster(0, "fail", "a100-0")
    sim.inject([RequestInput(1, 10, 2, client_id="a100-0", pipeline="_fleet_direct")])
    sim.advance()
    assert sim.dropped == 1 and sim.request_records()["status"].tolist() == [2]
    assert sim.records.drop_reasons == {0: "pinned_client_unavailable"}


# ---------------------------------------------------------------- pacer: gateway jobs


def test_gateway_job_runs_every_stage_and_releases_the_thinking_before_the_answer():
    sim = Simulation(fleet_spec(MULTI), record_events=True)
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=1.0, clock=clock)
    call = pacer.submit(None, MODEL, (300,), [40], 1, pipeline=None)
    (job,) = call.jobs
    seen = []
    while not job.done:
        clock.t += 0.001
        pacer.step(clock.t)
        seen.append((sim.now_ns, job.generated, job.released))
        assert job.released == job.generated  # thinking tokens go out too (as reasoning_content), first
        if not job.done:
            assert job.released <= job.output + job.thinking - 1
    assert job.thinking == 80  # thinking_multiplier 2 x 40 answer tokens
    assert job.released == 120 and job.generated == 120 and not job.error
    # no answer token before the thinking is done: the first goes out 80 engine tokens after the first token
    first_answer = next(t for t, _, r in seen if r > job.thinking)
    steps = [t for t, g, _ in seen if g >= 1]
    assert first_answer > min(steps) > job.first_ns - 1
    assert job.client_id.startswith("dec-")  # the cadence follows the decode client
    assert stage_groups_run(sim).keys() == GROUPS
    assert {"embed", "search", "rerank", "guard"} <= clients_run(sim)


def test_gateway_decisions_of_an_external_spec_are_answered_round_robin():
    sim = Simulation(fleet_spec("hetero-demo"), record_events=True)  # router: external
    clock = FakeClock()
    pacer = Pacer(sim, time_scale=1.0, clock=clock)
    from server.fleet.router import RoundRobin

    pacer.background = RoundRobin()
    calls = [pacer.submit(None, MODEL, (50,), [4], 1) for _ in range(3)]
    for _ in range(5000):
        clock.t += 0.002
        pacer.step(clock.t)
        if all(c.finished for c in calls):
            break
    assert all(c.finished for c in calls) and sim.completed == 3
    assert sorted(j.client_id for c in calls for j in c.jobs) == ["a100-0", "h100-0", "l40s-0"]


# ---------------------------------------------------------------- HTTP, with the openai client


@pytest.fixture(scope="module")
def gateway():
    with FleetThread(MULTI, time_scale=20.0, gateway_port=0) as ft:
        yield ft


@pytest.mark.slow
def test_openai_client_through_the_gateway_runs_the_whole_pipeline(gateway):
    openai = pytest.importorskip("openai")
    url = gateway.fleet.gateway.url
    asked = [8, 16, 24, 32, 12, 20]

    async def one(client, i: int, tokens: int) -> tuple:
        """(answer tokens, reasoning tokens, usage.completion_tokens, usage's reasoning_tokens) of one call."""
        if i % 3 == 0:  # a completion has no reasoning parser: its text is the raw output, thinking included
            r = await client.completions.create(model=MODEL, prompt="question " * (20 + i), max_tokens=tokens)
            assert r.choices[0].finish_reason == "length"
            return r.choices[0].text.count(" tok") - 2 * tokens, 2 * tokens, r.usage.completion_tokens, 2 * tokens
        if i % 3 == 1:
            r = await client.chat.completions.create(model=MODEL, max_tokens=tokens,
                                                     messages=[{"role": "user", "content": "why? " * i}])
            m = r.choices[0].message
            return (m.content.count(" tok"), m.reasoning_content.count(" tok"), r.usage.completion_tokens,
                    r.usage.completion_tokens_details.reasoning_tokens)
        stream = await client.chat.completions.create(model=MODEL, max_tokens=tokens, stream=True,
                                                      stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "stream it"}])
        got, thought, usage, finish = 0, 0, None, None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for c in chunk.choices:
                r_tok = (getattr(c.delta, "reasoning_content", None) or "").count(" tok")
                assert not (r_tok and got)  # vLLM's order: every reasoning token before the answer
                thought += r_tok
                got += (c.delta.content or "").count(" tok")
                finish = c.finish_reason or finish
        assert finish == "length"
        return got, thought, usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens

    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
        try:
            return list(await asyncio.gather(*(one(client, i, n) for i, n in enumerate(asked))))
        finally:
            await client.close()

    before = gateway.on_loop(lambda: stage_groups_run(gateway.fleet.sim))
    # the spec's reasoning thinks 2 tokens per answer token; usage counts both
    assert asyncio.run(run()) == [(n, 2 * n, 3 * n, 2 * n) for n in asked]
    after = gateway.on_loop(lambda: stage_groups_run(gateway.fleet.sim))
    for g in GROUPS:  # each call ran every stage (rag is three parts: embed, search, rerank)
        assert after[g] - before.get(g, 0) == len(asked) * (3 if g == "rag" else 1), (g, before, after)
    status, text = get(url + "/metrics")
    assert status == 200
    for g in GROUPS:
        assert metric(text, "hermes_stage_latency_seconds_count", stage=g) >= len(asked)
    assert metric(text, "hermes_requests_completed_total") >= len(asked)
    assert metric(text, "hermes_requests_dropped_total") == 0


@pytest.mark.slow
def test_gateway_models_list_every_served_model_and_a_listener_still_pins(gateway):
    status, text = get(gateway.fleet.gateway.url + "/v1/models")
    assert status == 200 and '"Llama-3.1-8B"' in text and '"Llama-3.1-70B"' in text
    status, body, headers = post(gateway.url(0) + "/v1/completions", {"prompt": "x", "max_tokens": 3})
    assert status == 200 and headers["x-hermes-instance"] == "big"
    status, body, headers = post(gateway.fleet.gateway.url + "/v1/completions",
                                 {"prompt": "x", "max_tokens": 3, "model": MODEL})
    assert status == 200 and headers["x-hermes-instance"].startswith("dec-")


@pytest.mark.slow
def test_hermes_fleet_gateway_port_flag(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "server.cli", "fleet", MULTI, "--gateway-port", "70000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--gateway-port" in bad.stderr
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", "fleet", MULTI, "--base-port", "0",
                             "--gateway-port", "0", "--log-level", "error"], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.split())
            if line.startswith("hermes fleet ready"):
                break
        gw = [w for w in lines if w[:2] == ["hermes", "gateway"]]
        assert len(gw) == 1 and gw[0][2] == MODEL
        status, body, _ = post(gw[0][3] + "/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 200 and body["usage"]["completion_tokens"] == 2 + 4  # answer + 2x thinking
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
