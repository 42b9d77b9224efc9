"""One validator: what load_spec accepts builds a Simulation; answers are validated and applied once."""

from __future__ import annotations

import copy

import pytest

from sim_engine import (
    MAX_TIME_NS,
    DecisionAnswer,
    NotFoundError,
    OutOfRangeError,
    RequestInput,
    Simulation,
    SpecError,
    StopReason,
    UnknownReferenceError,
    load_spec,
)
from sim_engine.client_api import Client, ClientStatus, llm_counters
from sim_engine.fields import Fields
from sim_engine.kernel import PRIO_INPUT, Kernel

BASE = {
    "name": "v",
    "clients": [{"id": "c", "hardware": "H100-SXM", "model": "llama-3.1-8b", "replicas": 2},
                {"id": "g", "role": "generic"}],
    "workload": {"arrival": {"process": "poisson", "rate": 4.0}, "prompt_tokens": 100, "output_tokens": 20,
                 "num_requests": 10},
}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"clients[0].tp": 3}, "clients[0].tp"),  # Simulation() used to be the first to notice
    ({"clients[0].pp": 64}, "clients[0].pp"),
    ({"clients[0].perf.turbo": True}, "clients[0].perf.turbo"),
    ({"clients[0].perf.kind": "trace"}, "clients[0].perf.trace_path"),  # nothing bundled for this model
])
def test_load_spec_runs_the_checks_simulation_used_to_run(overrides, field):
    with pytest.raises(SpecError) as e:
        load_spec(copy.deepcopy(BASE), overrides)
    assert e.value.field == field


def test_a_client_added_at_run_time_is_checked_by_the_same_validator():
    sim = Simulation(load_spec(copy.deepcopy(BASE)))
    with pytest.raises(SpecError) as e:
        sim.change_cluster(0, "add", "new", {"hardware": "H100-SXM", "model": "llama-3.1-8b", "tp": 3})
    assert e.value.field == "client.tp"
    assert "new" not in sim.client_by_id


def test_fields_reject_non_finite_integers_and_treat_null_as_the_default():
    f = Fields({"a": float("nan"), "b": float("inf"), "c": None, "d": 4.0}, "x")
    for key in ("a", "b"):
        with pytest.raises(SpecError, match=f"x.{key}"):
            f.int(key, 1)
    assert f.int("c", 7) == 7 and f.int("d", 1, maximum=4) == 4
    with pytest.raises(SpecError, match="x.d"):
        f.int("d", 1, maximum=3)


# ---------------------------------------------------------------- client protocol


def test_every_client_follows_the_protocol_and_task_clients_fake_nothing():
    sim = Simulation(load_spec(copy.deepcopy(BASE)))
    assert all(isinstance(c, Client) for c in sim.clients)
    task = sim.client_by_id["g"]
    assert not hasattr(task, "total_blocks") and not hasattr(task, "kv_peak")
    assert llm_counters(task).total_blocks == 0
    assert llm_counters(sim.client_by_id["c-0"]).total_blocks > 0
    assert sim.client_by_id["c-0"].status == ClientStatus.ACTIVE == "active"
    assert [c.status for c in sim.state().clients] == ["active"] * 3


# ---------------------------------------------------------------- decide_many


def _external(n: int) -> Simulation:
    """A simulation with ``n`` decisions pending at once (an embedding batch ends: n searches to place)."""
    doc = copy.deepcopy(BASE)
    doc["clients"] += [{"id": "emb", "role": "embedding", "hardware": "A100-80GB", "model": "e5-base"},
                       {"id": "cpu", "role": "retrieval", "hardware": "Grace"},
                       {"id": "cpu2", "role": "retrieval", "hardware": "Grace"}]
    doc["pipelines"] = {"default": [{"kind": "rag", "embed": {"model": "e5-base"},
                                     "index": {"kind": "flat", "vectors": 1000, "dim": 64}}, {"kind": "llm"}]}
    doc["router"] = "external"
    doc["workload"] = {"arrival": {"process": "none"}}
    sim = Simulation(load_spec(doc), record_events=True)
    sim.inject([RequestInput(0, 100, 5, request_id=f"r{i}") for i in range(n)])
    for _ in range(n):  # every embed stage to the one embedding client: they run as one batch
        assert sim.advance().reason is StopReason.DECISION_NEEDED
        (d,) = sim.pending_decisions()
        sim.decide(d.decision_id, "route", "emb")
    assert sim.advance().reason is StopReason.DECISION_NEEDED
    assert len(sim.pending) == n and {d.stage_kind for d in sim.pending_decisions()} == {"search"}
    return sim


def _snapshot(sim: Simulation) -> tuple:
    return (sorted(sim.pending), len(sim.kernel), sim.kernel.now, sim.dropped, sim.state().to_dict())


@pytest.mark.parametrize(("bad", "error", "field"), [
    (DecisionAnswer(999), NotFoundError, "answers[1].decision_id"),
    (DecisionAnswer(None, "route", "c-0"), NotFoundError, "answers[1].decision_id"),
    ("route", SpecError, "answers[1]"),
    (DecisionAnswer(-1, "route", "nope"), UnknownReferenceError, "answers[1].client_id"),
    (DecisionAnswer(-1, "route", "c-0"), SpecError, "answers[1].client_id"),  # cannot search
    (DecisionAnswer(-1, "defer", None, 0), SpecError, "answers[1].retry_after_ns"),
    (DecisionAnswer(-1, "defer", None, MAX_TIME_NS), OutOfRangeError, "answers[1].retry_after_ns"),
    (DecisionAnswer(-1, "teleport"), SpecError, "answers[1].action"),
    (DecisionAnswer(-2, "drop"), SpecError, "answers[1].decision_id"),  # the first answer's decision again
])
def test_decide_many_is_atomic(bad, error, field):
    sim = _external(2)
    first, second = sorted(sim.pending)
    if isinstance(bad, DecisionAnswer) and bad.decision_id == -1:
        bad = DecisionAnswer(second, bad.action, bad.client_id, bad.retry_after_ns)
    elif isinstance(bad, DecisionAnswer) and bad.decision_id == -2:
        bad = DecisionAnswer(first, bad.action)
    before = _snapshot(sim)
    with pytest.raises(error) as e:
        sim.decide_many([DecisionAnswer(first, "route", "cpu"), bad])
    assert field in str(e.value)
    assert _snapshot(sim) == before  # nothing was applied


def test_decide_many_applies_every_answer():
    sim = _external(3)
    a, b, c = sorted(sim.pending)
    now = sim.now_ns
    sim.decide_many([DecisionAnswer(a, "route", "cpu"), DecisionAnswer(b, "defer", retry_after_ns=5),
                     DecisionAnswer(c, "drop")])
    assert not sim.pending and sim.dropped == 1
    r = sim.advance()
    assert r.reason is StopReason.DECISION_NEEDED and r.time_ns == now + 5  # the deferred one asks again


def test_decide_many_matches_one_by_one_decisions():
    one, many = _external(4), _external(4)
    ids = sorted(one.pending)
    answers = [DecisionAnswer(d, "route", "cpu" if i % 2 else "cpu2") for i, d in enumerate(ids)]
    for a in answers:
        one.decide(a.decision_id, a.action, a.client_id)
    many.decide_many(answers)
    for sim in (one, many):
        while not sim.is_done():
            if sim.advance().reason is StopReason.DECISION_NEEDED:
                for d in sim.pending_decisions():
                    sim.decide(d.decision_id, "route", d.candidates[0])
    assert one.summary() == many.summary() and one.summary()["requests"]["completed"] == 4


# ---------------------------------------------------------------- the kernel's loops


def test_kernel_run_until_reports_why_it_stopped():
    k = Kernel()
    seen: list[int] = []
    for t in (5, 10, 15):
        k.schedule(t, PRIO_INPUT, seen.append, t)
    assert k.run_until(10, None, lambda: False) == (2, "drained") and k.now == 10
    k.schedule(20, PRIO_INPUT, seen.append, 20)
    assert k.run_until(None, 1, lambda: False) == (1, "bound")
    assert k.run_until(None, None, lambda: True) == (1, "halted")
    assert seen == [5, 10, 15, 20] and len(k) == 0
    with pytest.raises(ValueError):
        k.move_clock(3)
