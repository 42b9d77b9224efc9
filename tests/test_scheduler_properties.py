"""Scheduler invariants on random workloads, for every batching mode x admission policy, on a small KV.

Hooks wrapped around the LLM client's step functions check, at every step (and for every
step of a closed-form decode run), that KV blocks in use never exceed capacity and that the
aggregate block count equals what the requests hold. After the run: every request ended
exactly once, each completed request got exactly the tokens it asked for and the clients
produced no token twice (a recompute re-prefills generated tokens instead of decoding them
again), reserve admission never preempts, and closed-form decode equals stepping bit for bit.
All of it holds with the GPU prefix cache on (requests in two prefix groups), where blocks in
use + cached blocks never exceed capacity either and shared prefix blocks are counted once,
and with requests aborted at random times (``Simulation.abort``): right after an abort the
blocks in use are exactly those the remaining requests hold, even mid-step or mid-run.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim_engine.llm_client as llm_client
from sim_engine import RequestInput, Simulation, load_spec
from sim_engine.llm_client import LLMClient
from sim_engine.request import STATUS_ABORTED, STATUS_COMPLETED

pytestmark = pytest.mark.slow  # random workloads x every mode: seconds each

MODES = ("static", "continuous", "chunked", "mixed")
ADMISSIONS = ("greedy", "reserve")
PIPELINES = {
    "default": [{"kind": "llm"}],
    "pd": [{"kind": "prefill"}, {"kind": "decode"}],
    "branches": [{"kind": "llm"}, {"kind": "reasoning", "thinking_multiplier": 1, "branches": 3, "first_k": 2}],
}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def audit(c: LLMClient, in_flight: bool = False) -> None:
    """The aggregate KV counters equal what the requests hold, and stay within capacity.

    ``in_flight``: also check while a step or run is in flight (after an abort, where the
    counters must already be exact: a stepped decode has charged its next block at its start)."""
    assert 0 <= c.used_blocks <= c.total_blocks, (c.used_blocks, c.total_blocks)
    if c.cache is not None and c.run is None:  # a run evicts for its later steps at its end
        assert 0 <= c.cache.blocks == sum(hi - lo for lo, hi in c.cache.runs.values())
        assert c.used_blocks + c.cache.blocks <= c.total_blocks, (c.used_blocks, c.cache.blocks)
    if c.busy and not in_flight:  # a step or run is in flight: its counters move at its end
        return
    ahead = 1 if c.busy and c.run is None and c.step_decodes else 0
    seqs = list(c.decoding.values())
    parents = list({id(s.parent): s.parent for s in seqs if s.parent is not None}.values())
    held = sum(_ceil_div(s.base + c.G + ahead, c.bs) - s.shared for s in seqs)
    held += sum(r.blocks for r in c.prefilling) + sum(p.blocks for p in parents)
    held += sum(blocks for _, blocks in c.sharing.values())  # prefix blocks shared in use, counted once
    assert c.used_blocks == held
    holders = Counter(r.prefix_key for r in [s for s in seqs if s.parent is None] + c.prefilling if r.shared)
    assert holders == {key: n for key, (n, _) in c.sharing.items()}
    if c.reserve:
        owners = [s for s in seqs if s.parent is None] + parents + c.prefilling
        assert c.committed == sum(r.reserved for r in owners) <= c.total_blocks
        assert c.used_blocks <= c.committed
    else:
        assert c.committed == 0


@pytest.fixture()
def checked(monkeypatch):
    """Wrap the client's step functions so every step is checked."""
    seen = {"steps": 0}

    def after(name, check):
        original = getattr(LLMClient, name)

        def wrapped(self, *args):
            out = original(self, *args)
            check(self)
            seen["steps"] += 1
            return out

        monkeypatch.setattr(LLMClient, name, wrapped)

    def run_fits(c: LLMClient) -> None:  # every step of a closed-form run, at its start
        assert c.used_blocks + int(c.run.blocks_cum[c.run.k - 1]) <= c.total_blocks

    for name in ("_plan", "_end_step", "_end_run", "_start_step"):
        after(name, audit)
    after("_start_run", run_fits)
    return seen


requests_st = st.lists(
    st.tuples(st.integers(0, 80_000_000), st.integers(1, 300), st.integers(1, 120)), min_size=1, max_size=24)


def simulate(batching: str, admission: str, pipeline: str, blocks: int, block_size: int, max_seqs: int,
             budget: int | None, reqs: list[tuple[int, int, int]], caching: bool = False,
             aborts: list[tuple[int, int]] = (), steps: int = 1) -> Simulation:
    """Run the requests to the end; ``aborts``: (time after its arrival, request index) pairs, each checked
    as it happens; ``steps``: decode steps per scheduling decision (multi-step scheduling)."""
    sched = {"batching": batching, "admission": admission, "block_size": block_size, "max_num_seqs": max_seqs,
             "prefix_caching": caching, "num_scheduler_steps": steps}
    if budget is not None:
        sched["max_num_batched_tokens"] = budget
    roles = ("prefill", "decode") if pipeline == "pd" else ("both",)
    doc = {
        "name": "prop", "seed": 1,
        "clients": [{"id": r, "hardware": "H100-SXM", "model": "Llama-3.1-8B", "role": r, "scheduler": sched}
                    for r in roles],
        "router": "round_robin",
        "pipelines": {"p": PIPELINES[pipeline]},
        "workload": {"arrival": {"process": "none"}, "pipeline": "p", **({"prefix": {"tokens": 48}} if caching else {})},
    }
    sim = Simulation(load_spec(doc), record_events=bool(aborts))
    for c in sim.clients:
        c.total_blocks = blocks  # a small KV, whatever the hardware and model give
    t, batch = 0, []
    for gap, prompt, output in reqs:
        t += gap
        batch.append(RequestInput(t, prompt, output, prefix_key=f"g{len(batch) % 2}" if caching else None))
    sim.inject(batch)
    gone: set[str] = set()

    def after_aborts(events) -> set[str]:  # ids of aborted requests with an event other than their abort
        return gone & {e.request_id for e in events if e.kind != "aborted"}

    arrivals = [r.arrival_ns for r in batch]
    for t, i in sorted((arrivals[i % len(reqs)] + dt, i % len(reqs)) for dt, i in aborts):
        assert not after_aborts(sim.advance(until_ns=max(t, sim.now_ns)).events)
        rid = f"#{i}"
        live = rid in sim.in_flight()
        assert sim.abort(rid) is live and sim.abort(rid) is False
        gone.add(rid)
        for c in sim.clients:
            audit(c, in_flight=True)
            held = list(c.waiting) + c.prefilling + [s.parent or s for s in c.decoding.values()] + list(c.in_frontend)
            assert all(sim.request_id(r) != rid for r in held)
    assert not after_aborts(sim.advance().events)
    assert sim.is_done()
    return sim


def records(sim: Simulation) -> dict:
    r = sim.request_records()
    order = np.argsort(r["idx"], kind="stable")
    return {k: v[order].tolist() for k, v in r.items()}


@pytest.mark.parametrize("caching", [False, True])
@pytest.mark.parametrize("admission", ADMISSIONS)
@pytest.mark.parametrize("batching", MODES)
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pipeline=st.sampled_from(sorted(PIPELINES)),
    blocks=st.integers(4, 60),
    block_size=st.sampled_from([4, 16]),
    max_seqs=st.integers(1, 8),
    budget=st.one_of(st.none(), st.integers(16, 512)),
    reqs=requests_st,
    steps=st.sampled_from([1, 3]),
)
def test_kv_tokens_and_endings_hold_at_every_step(checked, batching, admission, caching, pipeline, blocks,
                                                  block_size, max_seqs, budget, reqs, steps):
    assert llm_client.MAX_RUN_STEPS > 1
    sim = simulate(batching, admission, pipeline, blocks, block_size, max_seqs, budget, reqs, caching, steps=steps)
    assert checked["steps"] > 0
    r = records(sim)
    # every request ended exactly once
    assert r["idx"] == list(range(len(reqs)))
    assert sim.completed + sim.dropped == len(reqs)
    completed = [i for i, s in enumerate(r["status"]) if s == STATUS_COMPLETED]
    for c in sim.clients:
        assert c.used_blocks == 0 and c.committed == 0 and c.kv_peak <= c.total_blocks
        assert (c.cache is not None) == caching
        if admission == "reserve":
            assert c.preemptions_total == 0
    produced = sum(c.generation_tokens_total for c in sim.clients)
    assert all(r["output_tokens"][i] == 0 for i in range(len(reqs)) if i not in completed)
    if pipeline != "branches":
        # every completed request got the tokens it asked for, and no token was produced twice
        for i in completed:
            assert r["output_tokens"][i] == reqs[i][2]
        assert produced == sum(reqs[i][2] for i in completed)
    elif all(_ceil_div(p + 3 * 2 * o, block_size) + 3 <= blocks for _, p, o in reqs):
        # 3 branches of 2 x output tokens (thinking + answer); the first token comes from the prefill and
        # each branch decodes the rest once, also across preemptions (they fit in KV together: kept on resume)
        for i in completed:
            assert r["output_tokens"][i] == 2 * reqs[i][2]
        assert produced == sum(1 + 3 * (2 * reqs[i][2] - 1) for i in completed)
    # closed-form decode runs are bit-identical to stepping one decode step (multi-step group) per event
    saved, llm_client.MAX_RUN_STEPS = llm_client.MAX_RUN_STEPS, 1
    try:
        stepped = simulate(batching, admission, pipeline, blocks, block_size, max_seqs, budget, reqs, caching,
                           steps=steps)
    finally:
        llm_client.MAX_RUN_STEPS = saved
    assert records(stepped) == r
    assert [c.preemptions_total for c in stepped.clients] == [c.preemptions_total for c in sim.clients]


def test_greedy_preempts_and_resumes_without_regenerating_tokens(monkeypatch):
    """A workload that must preempt: each victim re-prefills prompt + the tokens it had, then decodes the rest."""
    recomputed = []
    original = LLMClient._preempt_one

    def preempt(self, now):
        out = original(self, now)
        victim = self.waiting[0]
        assert victim.prefilled == 0 and victim.generated >= 1
        recomputed.append(victim.prompt + victim.generated)
        return out

    monkeypatch.setattr(LLMClient, "_preempt_one", preempt)
    reqs = [(0, 40, 100)] * 6
    sim = simulate("continuous", "greedy", "default", 30, 16, 8, None, reqs)
    client = sim.clients[0]
    assert client.preemptions_total == len(recomputed) > 0
    assert max(recomputed) > 40 + 1  # victims kept the tokens they had decoded, not just the first
    assert client.generation_tokens_total == 600
    assert client.prompt_tokens_total == 6 * 40 + sum(recomputed)  # whole prefills: nothing else is prefilled
    assert records(sim)["output_tokens"] == [100] * 6
    reserve = simulate("continuous", "reserve", "default", 30, 16, 8, None, reqs)
    assert reserve.clients[0].preemptions_total == 0
    assert reserve.clients[0].prompt_tokens_total == 6 * 40
    assert records(reserve)["output_tokens"] == [100] * 6


@pytest.mark.parametrize("caching", [False, True])
@pytest.mark.parametrize("admission", ADMISSIONS)
@pytest.mark.parametrize("batching", MODES)
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pipeline=st.sampled_from(sorted(PIPELINES)),
    blocks=st.integers(4, 60),
    block_size=st.sampled_from([4, 16]),
    max_seqs=st.integers(1, 8),
    budget=st.one_of(st.none(), st.integers(16, 512)),
    reqs=requests_st,
    aborts=st.lists(st.tuples(st.integers(0, 400).map(lambda q: q * 250_000), st.integers(0, 23)), min_size=1,
                    max_size=6),
    steps=st.sampled_from([1, 3]),
)
def test_aborts_free_everything_and_keep_the_invariants(checked, batching, admission, caching, pipeline, blocks,
                                                         block_size, max_seqs, budget, reqs, aborts, steps):
    """Aborts at random times: each request still ends exactly once, an aborted one got no more tokens
    than it asked for, the KV is empty at the end, and closed-form decode still equals stepping."""
    sim = simulate(batching, admission, pipeline, blocks, block_size, max_seqs, budget, reqs, caching, aborts, steps)
    r = records(sim)
    assert r["idx"] == list(range(len(reqs)))
    assert sim.completed + sim.dropped + sim.aborted == len(reqs)
    aborted = [i for i, s in enumerate(r["status"]) if s == STATUS_ABORTED]
    assert len(aborted) == sim.aborted == sim.summary()["requests"]["aborted"] >= 1 or sim.aborted == 0
    per_branch = 2 if pipeline == "branches" else 1  # thinking + answer
    for i in aborted:
        assert 0 <= r["output_tokens"][i] <= per_branch * reqs[i][2]
    for i, status in enumerate(r["status"]):
        if status == STATUS_COMPLETED and pipeline != "branches":
            assert r["output_tokens"][i] == reqs[i][2]
    for c in sim.clients:
        assert c.used_blocks == 0 and c.committed == 0 and c.kv_peak <= c.total_blocks
        assert not c.in_frontend and not c.sharing
    saved, llm_client.MAX_RUN_STEPS = llm_client.MAX_RUN_STEPS, 1
    try:
        stepped = simulate(batching, admission, pipeline, blocks, block_size, max_seqs, budget, reqs, caching, aborts,
                           steps)
    finally:
        llm_client.MAX_RUN_STEPS = saved
    assert records(stepped) == r
