"""External iteration-level batching (`scheduler.batching: external`) in the engine, in-process.

The policies of examples/external_batcher.py answer the engine's batch decisions here
directly (they read only the decision's fields). The vLLM-style batcher must give
per-request results identical to the built-in `continuous` and `chunked` policies;
shortest-remaining-first must give different, valid results; bad answers must be
rejected whole, naming the field, with the state digest unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_engine import (
    BatchAnswer,
    BatchItem,
    NotFoundError,
    RequestInput,
    Simulation,
    SpecError,
    StopReason,
    load_spec,
)
from sim_engine.digest import state_digest
from sim_engine.request import STATUS_COMPLETED

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from external_batcher import ContinuousBatcher, ShortestRemainingFirst  # noqa: E402

PIPELINES = {
    "default": [{"kind": "llm"}],
    "pd": [{"kind": "prefill"}, {"kind": "decode"}],
    "branches": [{"kind": "llm"}, {"kind": "reasoning", "thinking_multiplier": 1, "branches": 3, "first_k": 2}],
}


def make_sim(batching: str, reqs: list[tuple[int, int, int]], blocks: int = 40, block_size: int = 16,
             max_seqs: int = 8, budget: int | None = 256, pipeline: str = "default",
             admission: str = "greedy") -> Simulation:
    sched = {"batching": batching, "block_size": block_size, "max_num_seqs": max_seqs, "admission": admission}
    if budget is not None:
        sched["max_num_batched_tokens"] = budget
    if batching != "external":  # the built-in policy to compare with: no GPU prefix cache, as under external
        sched["prefix_caching"] = False
    roles = ("prefill", "decode") if pipeline == "pd" else ("both",)
    doc = {
        "name": "extbatch", "seed": 1,
        "clients": [{"id": f"gpu{i}", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "role": role,
                     "scheduler": sched} for i, role in enumerate(roles)],
        "router": "round_robin",
        "pipelines": {"p": PIPELINES[pipeline]},
        "workload": {"arrival": {"process": "none"}, "pipeline": "p"},
    }
    sim = Simulation(load_spec(doc), record_events=True)
    for c in sim.clients:
        c.total_blocks = blocks  # a small KV, so that admission waits and decodes preempt
    t, batch = 0, []
    for gap, prompt, output in reqs:
        t += gap
        batch.append(RequestInput(t, prompt, output))
    sim.inject(batch)
    return sim


def answer_of(decision_id: int, batch) -> BatchAnswer:
    return BatchAnswer(decision_id, tuple(BatchItem(r, t) for r, t in batch.schedule), tuple(batch.preempt),
                       batch.repeat_decodes)


def drive(sim: Simulation, policy, max_rounds: int = 200_000) -> int:
    """Answer every batch decision with ``policy`` until the session is idle; returns the decisions answered."""
    answered = 0
    for _ in range(max_rounds):
        out = sim.advance()
        if out.reason != StopReason.DECISION_NEEDED:
            return answered
        for d in sim.pending_batch_decisions():
            sim.decide_batch(answer_of(d.decision_id, policy.batch(d)))
            answered += 1
    raise AssertionError("the session did not finish")


def records(sim: Simulation) -> dict:
    r = sim.request_records()
    order = np.argsort(r["idx"], kind="stable")
    return {k: v[order].tolist() for k, v in r.items()}


requests_st = st.lists(
    st.tuples(st.integers(0, 80_000_000), st.integers(1, 300), st.integers(1, 120)), min_size=1, max_size=16)


@pytest.mark.parametrize("builtin", ["continuous", "chunked"])
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests_st, blocks=st.integers(20, 60), block_size=st.sampled_from([4, 16]),
       max_seqs=st.integers(1, 8), budget=st.integers(300, 512), pipeline=st.sampled_from(sorted(PIPELINES)))
@pytest.mark.slow
def test_external_continuous_batcher_equals_the_builtin_policy(builtin, reqs, blocks, block_size, max_seqs,
                                                               budget, pipeline):
    shape = dict(blocks=blocks, block_size=block_size, max_seqs=max_seqs, budget=budget, pipeline=pipeline)
    ref = make_sim(builtin, reqs, **shape)
    ref.advance()
    assert ref.is_done()
    ext = make_sim("external", reqs, **shape)
    answered = drive(ext, ContinuousBatcher(chunked=builtin == "chunked"))
    assert ext.is_done() and (answered > 0 or ext.dropped == len(reqs))  # dropped at routing: never asked
    assert records(ext) == records(ref)
    for e, r in zip(ext.clients, ref.clients, strict=True):
        assert (e.preemptions_total, e.generation_tokens_total) == (r.preemptions_total, r.generation_tokens_total)


def test_the_builtin_match_covers_preemption_and_chunks():
    """A fixed case that must preempt and chunk, so the equality above is not vacuous."""
    reqs = [(0, 200, 100)] * 6 + [(1_000_000, 40, 60)] * 4
    for builtin in ("continuous", "chunked"):
        ref = make_sim(builtin, reqs, blocks=40, budget=128 if builtin == "chunked" else 256)
        ref.advance()
        ext = make_sim("external", reqs, blocks=40, budget=128 if builtin == "chunked" else 256)
        drive(ext, ContinuousBatcher(chunked=builtin == "chunked"))
        assert ref.clients[0].preemptions_total > 0
        assert records(ext) == records(ref)


def test_shortest_remaining_first_differs_and_is_valid():
    reqs = [(0, 300, 200), (0, 20, 10), (0, 250, 150), (0, 10, 5), (0, 30, 20), (500_000, 15, 8)]
    ref = make_sim("chunked", reqs, blocks=60, budget=128)
    ref.advance()
    srf = make_sim("external", reqs, blocks=60, budget=128)
    drive(srf, ShortestRemainingFirst())
    a, b = records(ref), records(srf)
    assert srf.is_done() and all(s == STATUS_COMPLETED for s in b["status"])
    assert b["output_tokens"] == [o for _, _, o in reqs]  # every request got exactly its tokens
    assert srf.clients[0].used_blocks == 0
    assert b["finish_ns"] != a["finish_ns"]
    # the short requests finish earlier than under FCFS chunked batching
    short = [1, 3, 4]
    assert sum(b["finish_ns"][i] for i in short) < sum(a["finish_ns"][i] for i in short)


# ---------------------------------------------------------------- bad answers


@pytest.fixture()
def paused() -> Simulation:
    """A session stopped at a batch decision with two decoding requests and one waiting."""
    sim = make_sim("external", [(0, 48, 50), (0, 48, 50), (0, 100, 10)], blocks=12, budget=100)
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 48), BatchItem("#1", 48))))
    out = sim.advance()
    assert out.reason == StopReason.DECISION_NEEDED
    (d,) = sim.pending_batch_decisions()
    assert [r.request_id for r in d.running] == ["#0", "#1"] and all(r.decoding for r in d.running)
    assert [r.request_id for r in d.waiting] == ["#2"]
    assert (d.free_blocks, sum(r.next_decode_blocks for r in d.running)) == (6, 2)
    return sim


BAD = [
    ("unknown id", [("#9", 1)], (), "batch_answers[0].schedule[0].request_id", NotFoundError),
    ("duplicate id", [("#0", 1), ("#0", 1), ("#1", 1)], (), "batch_answers[0].schedule[1].request_id", SpecError),
    ("decode takes 1 token", [("#0", 2), ("#1", 1)], (), "batch_answers[0].schedule[0].tokens", SpecError),
    ("chunk too long", [("#2", 101)], (), "batch_answers[0].schedule[0].tokens", SpecError),
    ("zero tokens", [("#2", 0)], (), "batch_answers[0].schedule[0].tokens", SpecError),
    ("over token budget", [("#0", 1), ("#1", 1), ("#2", 99)], (), "batch_answers[0].schedule", SpecError),
    ("KV does not fit", [("#0", 1), ("#1", 1), ("#2", 80)], (), "batch_answers[0].schedule", SpecError),
    ("a decode left out", [("#0", 1)], (), "batch_answers[0].schedule", SpecError),
    ("preempt a waiting request", [], ("#2",), "batch_answers[0].preempt[0]", SpecError),
    ("preempt an unknown request", [], ("#7",), "batch_answers[0].preempt[0]", NotFoundError),
    ("preempt twice", [], ("#1", "#1"), "batch_answers[0].preempt[1]", SpecError),
]


@pytest.mark.parametrize(("case", "schedule", "preempt", "field", "error"), BAD, ids=[b[0] for b in BAD])
def test_bad_answers_are_rejected_whole_and_change_nothing(paused, case, schedule, preempt, field, error):
    sim = paused
    (d,) = sim.pending_batch_decisions()
    before = state_digest(sim)
    bad = BatchAnswer(d.decision_id, tuple(BatchItem(r, t) for r, t in schedule), tuple(preempt))
    with pytest.raises(error) as err:
        sim.decide_batch(bad)
    assert field in str(err.value)
    assert state_digest(sim) == before
    assert sim.pending_batch_decisions() == [d]


def test_other_bad_answers(paused):
    sim = paused
    (d,) = sim.pending_batch_decisions()
    before = state_digest(sim)
    with pytest.raises(NotFoundError, match="decision_id"):
        sim.decide_batch(BatchAnswer(d.decision_id + 99))
    with pytest.raises(SpecError, match="repeat_decodes"):
        sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#2", 10),), repeat_decodes=True))
    with pytest.raises(SpecError, match=r"schedule\[0\].tokens"):
        sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#2", True),)))
    with pytest.raises(SpecError, match=r"batch_answers\[1\].decision_id"):
        sim.decide_many((), (BatchAnswer(d.decision_id), BatchAnswer(d.decision_id)))
    assert state_digest(sim) == before
    # a good answer after the bad ones still works
    sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 1), BatchItem("#1", 1)), repeat_decodes=True))
    assert sim.pending_batch_decisions() == []


def test_over_max_seqs_is_rejected():
    sim = make_sim("external", [(0, 16, 4)] * 3, blocks=40, max_seqs=2)
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    before = state_digest(sim)
    with pytest.raises(SpecError, match=r"schedule: 3 running sequences would exceed max_seqs 2"):
        sim.decide_batch(BatchAnswer(d.decision_id, tuple(BatchItem(f"#{i}", 16) for i in range(3))))
    assert state_digest(sim) == before


def test_preempt_then_reschedule_and_idle_answers():
    sim = make_sim("external", [(0, 64, 50), (0, 64, 50)], blocks=40)
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 64), BatchItem("#1", 64))))
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    # preempt #1 and recompute it at once (prompt + its first token), beside #0's decode
    sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 1), BatchItem("#1", 65)), ("#1",)))
    assert sim.clients[0].preemptions_total == 1
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    sim.decide_batch(BatchAnswer(d.decision_id))  # nothing: the client idles until work arrives
    assert sim.advance().reason == StopReason.IDLE and sim.completed == 0  # both still in flight
    sim.inject([RequestInput(sim.now_ns, 8, 2)])
    assert sim.advance().reason == StopReason.DECISION_NEEDED
    answered = drive(sim, ContinuousBatcher(chunked=True))
    assert answered > 0 and sim.is_done() and sim.completed == 3


def test_reserve_admission_checks_whole_reservations():
    sim = make_sim("external", [(0, 48, 100), (0, 48, 100)], blocks=12, admission="reserve")
    sim.advance()
    (d,) = sim.pending_batch_decisions()
    before = state_digest(sim)
    with pytest.raises(SpecError, match=r"schedule: reserve admission: the new requests reserve 20 KV blocks; 12"):
        sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 16), BatchItem("#1", 16))))
    assert state_digest(sim) == before
    sim.decide_batch(BatchAnswer(d.decision_id, (BatchItem("#0", 48),)))
    assert sim.clients[0].committed == 10


def test_a_forked_session_answers_its_batch_decision_independently():
    sim = make_sim("external", [(0, 64, 20), (1000, 32, 10)])
    sim.advance()
    twin, blob = sim.fork(), sim.snapshot()
    (d,) = sim.pending_batch_decisions()
    assert twin.pending_batch_decisions() == [d]
    drive(sim, ContinuousBatcher(chunked=True))
    assert twin.pending_batch_decisions() == [d] and twin.completed == 0
    drive(twin, ShortestRemainingFirst())
    assert sim.completed == twin.completed == 2
    restored = Simulation.restore(blob)
    assert restored.pending_batch_decisions() == [d]
    drive(restored, ContinuousBatcher(chunked=True))
    assert records(restored) == records(sim)


def test_offline_run_refuses_external_batching():
    sim = make_sim("external", [(0, 8, 2)])
    with pytest.raises(SpecError, match=r"clients\[0\].scheduler.batching"):
        sim.run()


def test_spec_names_external_among_batching_policies():
    with pytest.raises(SpecError, match="batching"):
        make_sim("externl", [(0, 8, 2)])


def test_runners_that_answer_no_batch_decisions_refuse_or_fail_fast():
    """The HTTP front refuses the spec; the routing RL environment fails instead of spinning."""
    from hermes_rl import RoutingEnv
    from server.fleet.app import fleet_spec

    doc = {"name": "x", "clients": [{"id": "g", "hardware": "H100-SXM", "model": "Llama-3.1-8B",
                                     "scheduler": {"batching": "external"}}]}
    with pytest.raises(SpecError, match=r"clients\[0\].scheduler.batching: client 'g'.*HTTP front"):
        fleet_spec(doc)
    env = RoutingEnv(spec={**doc, "workload": {"arrival": {"process": "poisson", "rate": 5}, "prompt_tokens": 10,
                                                "output_tokens": 4, "num_requests": 4}})
    env.reset(seed=0)  # stops at the first routing decision
    with pytest.raises(ValueError, match="not a routing decision"):
        for _ in range(10):
            env.step(0)


def test_external_batching_turns_the_gpu_prefix_cache_off():
    doc = {"name": "x", "clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B", "engine": "vllm",
                                     "scheduler": {"batching": "external"}}]}
    assert load_spec(doc).clients[0].scheduler.prefix_caching is False  # the vllm profile's default yields
    doc["clients"][0]["scheduler"]["prefix_caching"] = True
    with pytest.raises(SpecError, match=r"clients\[0\].scheduler.prefix_caching"):
        load_spec(doc)
