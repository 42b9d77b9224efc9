"""Behaviour of the simulator core: determinism, conservation, closed forms, lockstep stepping."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sim_engine.llm_client as llm_client
from sim_engine import (
    AlreadyExistsError,
    NotFoundError,
    OutOfRangeError,
    RequestInput,
    Simulation,
    SpecError,
    StopReason,
    load_spec,
)
from sim_engine.request import STATUS_COMPLETED
from sim_engine.workload import ArrivalSource


def spec_doc(batching="chunked", rate=4.0, n=60, replicas=1, router="round_robin", **sched):
    return {
        "name": "t", "seed": 3,
        "clients": [{"id": "c", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "replicas": replicas,
                     "scheduler": {"batching": batching, **sched}}],
        "router": router,
        "workload": {"arrival": {"process": "poisson", "rate": rate}, "num_requests": n,
                     "prompt_tokens": {"dist": "lognormal", "mean": 600, "sigma": 0.6, "max": 1900},
                     "output_tokens": {"dist": "lognormal", "mean": 120, "sigma": 0.6, "max": 600}},
    }


def run(doc, **kw) -> Simulation:
    sim = Simulation(load_spec(doc), **kw)
    sim.run()
    return sim


def records(sim: Simulation) -> dict:
    r = sim.request_records()
    order = np.argsort(r["idx"])
    return {k: v[order].tolist() for k, v in r.items()}


@pytest.mark.parametrize("batching", ["static", "continuous", "chunked", "mixed"])
def test_every_batching_policy_conserves_requests_and_tokens(batching):
    sim = run(spec_doc(batching, rate=8.0, n=80, replicas=2))
    s = sim.summary()
    assert s["requests"]["injected"] == 80
    assert s["requests"]["completed"] + s["requests"]["dropped"] == 80
    assert s["requests"]["dropped"] == 0
    # every token asked for was produced, once
    # the workload's draws depend only on the seed: draw them again to know what was asked
    spec = load_spec(spec_doc(batching, rate=8.0, n=80, replicas=2))
    regen = ArrivalSource(spec.workload, np.random.SeedSequence(spec.seed).spawn(2)[0], None, None)
    wanted = []
    while (item := regen.next()) is not None:
        wanted.append(item[2])
    assert len(wanted) == 80
    assert sorted(records(sim)["output_tokens"]) == sorted(wanted)
    assert sum(c["generation_tokens"] for c in s["clients"]) == sum(wanted)


def test_same_spec_and_seed_give_identical_json_and_other_seed_differs():
    a = json.dumps(run(spec_doc()).summary(), sort_keys=True)
    b = json.dumps(run(spec_doc()).summary(), sort_keys=True)
    assert a == b
    other = spec_doc()
    other["seed"] = 4
    assert json.dumps(run(other).summary(), sort_keys=True) != a


def run_small_kv(doc, blocks: int) -> Simulation:
    """Run with every client's KV cut to ``blocks`` blocks (whatever the hardware gives), to force preemption."""
    sim = Simulation(load_spec(doc))
    for c in sim.clients:
        c.total_blocks = blocks
    sim.run()
    return sim


@pytest.mark.slow
@pytest.mark.parametrize("admission", ["greedy", "reserve"])
@pytest.mark.parametrize("batching", ["static", "continuous", "chunked", "mixed"])
def test_closed_form_decode_runs_match_step_by_step(monkeypatch, batching, admission):
    """Advancing decode-only stretches in closed form changes nothing, bit for bit, with preemption too."""
    for doc, blocks in ((spec_doc(batching, rate=6.0, n=60, replicas=2, router="jsq", gpu_memory_utilization=0.3,
                                  admission=admission), None),
                        (spec_doc(batching, rate=20.0, n=80, replicas=2, router="jsq", admission=admission), 400)):
        fast = run(doc) if blocks is None else run_small_kv(doc, blocks)
        monkeypatch.setattr(llm_client, "MAX_RUN_STEPS", 1)
        slow = run(doc) if blocks is None else run_small_kv(doc, blocks)
        monkeypatch.undo()
        assert records(fast) == records(slow), batching
        sf, ss = fast.summary(), slow.summary()
        assert sf["latency_s"] == ss["latency_s"] and sf["requests"] == ss["requests"]
        assert sf["energy_j"] == pytest.approx(ss["energy_j"], rel=1e-12)  # only the summation order differs
        assert slow.kernel.events_processed > fast.kernel.events_processed
        if blocks is not None:  # the small KV preempts under greedy admission, never under reserve
            assert (sf["requests"]["preemptions"] > 0) == (admission == "greedy")


def test_single_request_ttft_and_e2e_equal_the_step_times():
    doc = spec_doc()
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(arrival_ns=1000, prompt_tokens=700, output_tokens=40)])
    sim.advance()
    perf = sim.clients[0].perf
    prefill_ns = round(perf.step([(0, 700)], 0, 0).time_s * 1e9)
    decode_ns = sum(max(1, round(perf.step((), 1, 700 + j).time_s * 1e9)) for j in range(39))
    r = sim.request_records()
    front = sim.clients[0].frontend_ns  # the engine's API-server time before the request is scheduled
    assert r["first_token_ns"][0] - r["arrival_ns"][0] == front + prefill_ns
    assert r["finish_ns"][0] - r["arrival_ns"][0] == front + prefill_ns + decode_ns


def test_kv_never_exceeds_capacity_and_preemption_recomputes():
    doc = spec_doc("continuous", rate=50.0, n=120, gpu_memory_utilization=0.3)
    doc["workload"]["output_tokens"] = {"dist": "fixed", "value": 900}
    sim = Simulation(load_spec(doc))
    client = sim.clients[0]
    total = client.total_blocks
    while not sim.is_done():
        sim.advance(max_events=7)
        assert 0 <= client.kv_used_now(sim.now_ns) <= total
        assert client.used_blocks <= total
    s = sim.summary()
    assert s["requests"]["preemptions"] > 0
    assert s["requests"]["completed"] == 120
    assert s["clients"][0]["kv_peak_usage"] <= 1.0
    assert all(t == 900 for t in records(sim)["output_tokens"])
    # a recomputed request re-prefills the tokens it generated instead of decoding them again
    assert client.generation_tokens_total == 120 * 900


def test_more_load_never_lowers_p90_ttft_when_saturated():
    p90 = []
    for rate in (20.0, 40.0, 80.0):
        p90.append(run(spec_doc("chunked", rate=rate, n=150)).summary()["latency_s"]["ttft"]["p90"])
    assert p90[0] <= p90[1] <= p90[2]


def test_faster_device_gives_faster_run():
    slow = spec_doc()
    slow["clients"][0]["hardware"] = "A100-80GB"
    s_fast = run(spec_doc()).summary()["latency_s"]
    s_slow = run(slow).summary()["latency_s"]
    assert s_fast["tpot"]["mean"] < s_slow["tpot"]["mean"]
    assert s_fast["ttft"]["p50"] < s_slow["ttft"]["p50"]


@pytest.mark.parametrize("policy", ["round_robin", "least_loaded", "jsq", "power_of_two"])
def test_routers_spread_requests(policy):
    s = run(spec_doc(rate=10.0, n=80, replicas=3, router=policy)).summary()
    done = [c["requests_completed"] for c in s["clients"]]
    assert sum(done) == 80 and min(done) > 0


def test_trace_replay_and_time_scale():
    doc = spec_doc()
    doc["workload"] = {"arrival": {"process": "trace", "trace": "azure_code", "time_scale": 0.5},
                       "num_requests": 50}
    sim = run(doc)
    r = records(sim)
    assert len(r["idx"]) == 50
    # the 50th arrival of the code trace is at 4.8.. s; halved by the time scale
    from sim_engine.spec import resolve_data_path
    from sim_engine.workload import load_trace

    trace = load_trace(resolve_data_path("azure_code", None, "t"), "t")
    assert max(r["arrival_ns"]) == round(trace.arrived_at[49] * 0.5 * 1e9)
    assert sorted(r["prompt_tokens"]) == sorted(trace.prompt_tokens[:50].tolist())


def test_closed_loop_keeps_at_most_n_users_in_flight():
    doc = spec_doc()
    doc["workload"]["arrival"] = {"process": "closed_loop", "users": 3, "think_time_s": 0.1}
    sim = Simulation(load_spec(doc))
    while not sim.is_done():
        sim.advance(max_events=5)
        assert sim.state().in_flight <= 3
    assert sim.summary()["requests"]["completed"] == 60


def test_external_routing_waits_for_decisions_and_validates_answers():
    doc = spec_doc(replicas=2, router="external")
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc), record_events=True)
    sim.inject([RequestInput(0, 100, 5), RequestInput(10, 100, 5, request_id="b")])
    r = sim.advance()
    assert r.reason is StopReason.DECISION_NEEDED and r.time_ns == 0
    (d,) = sim.pending_decisions()
    assert d.candidates == ["c-0", "c-1"]
    assert sim.advance().reason is StopReason.DECISION_NEEDED  # does not move past the decision
    with pytest.raises(SpecError, match="client_id"):
        sim.decide(d.decision_id, "route", "nope")
    with pytest.raises(NotFoundError):
        sim.decide(999, "route", "c-0")
    sim.decide(d.decision_id, "route", "c-1")
    r = sim.advance()
    (d2,) = sim.pending_decisions()
    assert d2.request_id == "b" and r.time_ns == 10
    sim.decide(d2.decision_id, "drop")
    r = sim.advance()
    assert r.reason is StopReason.IDLE
    kinds = [e.kind for e in r.events]
    assert "completed" in kinds and "dropped" in kinds
    assert sim.summary()["requests"]["drop_reasons"] == {"external_drop": 1}


def test_inject_is_atomic_and_rejects_bad_input():
    doc = spec_doc()
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc))
    sim.advance(until_ns=5_000)
    with pytest.raises(OutOfRangeError):
        sim.inject([RequestInput(6_000, 10, 10), RequestInput(4_000, 10, 10)])
    with pytest.raises(SpecError, match=r"requests\[1\].prompt_tokens"):
        sim.inject([RequestInput(6_000, 10, 10), RequestInput(6_000, 0, 10)])
    with pytest.raises(AlreadyExistsError):
        sim.inject([RequestInput(6_000, 10, 10, request_id="x"), RequestInput(6_000, 10, 10, request_id="x")])
    assert sim.injected == 0 and len(sim.kernel) == 0
    with pytest.raises(OutOfRangeError):
        sim.advance(until_ns=10)


def test_advance_until_time_moves_the_clock_and_reports_events():
    sim = Simulation(load_spec(spec_doc()), record_events=True)
    r = sim.advance(until_ns=2 * 10**9)
    assert r.reason is StopReason.TARGET_REACHED and r.time_ns == 2 * 10**9 == sim.now_ns
    assert all(e.time_ns <= 2 * 10**9 for e in r.events)
    r2 = sim.advance(next_event=True)
    assert r2.events_processed >= 1 and r2.time_ns > 2 * 10**9
    r3 = sim.advance(max_events=3)
    assert r3.reason is StopReason.EVENT_BOUND and r3.events_processed == 3
    sim.add_wakeup(sim.now_ns + 1)
    assert sim.advance().reason is StopReason.WAKEUP


def test_stepping_in_small_increments_equals_running_to_the_end():
    whole = run(spec_doc(replicas=2))
    stepped = Simulation(load_spec(spec_doc(replicas=2)))
    t = 0
    while not stepped.is_done():
        t += 37_000_000
        stepped.advance(until_ns=t)
    assert records(whole) == records(stepped)


def test_fork_matches_original_and_diverges_alone():
    sim = Simulation(load_spec(spec_doc(replicas=2)))
    sim.advance(until_ns=3 * 10**9)
    fork = sim.fork()
    restored = Simulation.restore(sim.snapshot())
    for s in (sim, fork, restored):
        s.advance()
    assert records(sim) == records(fork) == records(restored)
    a = Simulation(load_spec(spec_doc(replicas=2)))
    a.advance(until_ns=10**9)
    b = a.fork()
    b.inject([RequestInput(2 * 10**9, 500, 50)])
    a.advance()
    b.advance()
    assert len(records(b)["idx"]) == len(records(a)["idx"]) + 1


def test_cluster_changes_drain_and_fail():
    sim = Simulation(load_spec(spec_doc(rate=10.0, n=100, replicas=2)))
    sim.change_cluster(10**9, "drain", "c-0")
    sim.change_cluster(2 * 10**9, "add", "new", {"hardware": "A100-80GB", "model": "Llama-3.1-8B"})
    sim.change_cluster(3 * 10**9, "fail", "c-1")
    with pytest.raises(NotFoundError):
        sim.change_cluster(10**9, "drain", "ghost")
    sim.advance()
    s = sim.summary()
    by_id = {c["id"]: c for c in s["clients"]}
    assert by_id["new"]["requests_completed"] > 0
    assert by_id["c-1"]["status"] == "failed"
    assert s["requests"]["completed"] + s["requests"]["dropped"] == 100
    assert s["requests"]["drop_reasons"].get("client_failed", 0) >= 0


@pytest.mark.parametrize(("change", "field"), [
    ({"clients": []}, "clients"),
    ({"clients": [{"hardware": "H900", "model": "Llama-3.1-8B"}]}, "clients[0].hardware"),
    ({"clients": [{"hardware": "H100-SXM", "model": "Llama-9"}]}, "clients[0].model"),
    ({"clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B", "tp": 3}]}, "clients[0].tp"),
    ({"clients": [{"hardware": "A100-40GB", "model": "Llama-3.1-405B"}]}, "clients[0]"),
    ({"workload": {"arrival": {"process": "poisson", "rate": -1}, "num_requests": 5,
                   "prompt_tokens": 5, "output_tokens": 5}}, "workload.arrival.rate"),
    ({"workload": {"arrival": {"process": "poisson", "rate": 1}, "num_requests": 5,
                   "prompt_tokens": 5}}, "workload.output_tokens"),
    ({"router": "random"}, "router.policy"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_specs_name_the_field(change, field):
    doc = spec_doc()
    doc.update(change)
    with pytest.raises(SpecError) as e:
        Simulation(load_spec(doc))
    assert e.value.field.startswith(field), e.value


def test_bad_trace_file_names_the_line(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n0.5,abc,5\n")
    doc = spec_doc()
    doc["workload"] = {"arrival": {"process": "trace", "trace": "t.csv"}}
    with pytest.raises(SpecError, match=r"line 3") as e:  # checked by load_spec, before any run
        load_spec(doc, data_dir=tmp_path)
    assert "abc" not in str(e.value)  # errors never echo the file's contents


def test_a_million_requests_fit_in_compact_records():
    from sim_engine.request import Request, RequestRecords

    recs = RequestRecords()
    req = Request(0, None, 0, 10, 10, "m")
    for _ in range(20000):
        recs.add(req, STATUS_COMPLETED, 0, 5)
    per_request = sum(col.itemsize for col in recs.cols.values()) + 8  # + the id slot
    assert per_request * 1_000_000 < 200 * 2**20


def test_deferred_decision_is_asked_again_later():
    doc = spec_doc(replicas=2, router="external")
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(0, 100, 5)])
    sim.advance()
    (d,) = sim.pending_decisions()
    with pytest.raises(SpecError, match="retry_after_ns"):
        sim.decide(d.decision_id, "defer", retry_after_ns=0)
    sim.decide(d.decision_id, "defer", retry_after_ns=5_000)
    r = sim.advance()
    (d2,) = sim.pending_decisions()
    assert r.reason is StopReason.DECISION_NEEDED and r.time_ns == 5_000 and d2.decision_id != d.decision_id
    sim.decide(d2.decision_id, "route", "c-0")
    sim.advance()
    r = sim.request_records()
    assert r["scheduled_ns"][0] == 5_000 + sim.clients[0].frontend_ns and r["client"][0] == 0


def test_summary_names_the_spec():
    assert run(spec_doc(n=5)).summary()["name"] == "t"


def test_times_past_the_horizon_are_out_of_range():
    doc = spec_doc()
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc))
    for call in (lambda: sim.advance(until_ns=2**63 - 1), lambda: sim.add_wakeup(2**63 - 5),
                 lambda: sim.inject([RequestInput(2**63 - 10, 5, 5)])):
        with pytest.raises(OutOfRangeError, match="horizon"):
            call()
    assert sim.advance().reason is StopReason.IDLE
