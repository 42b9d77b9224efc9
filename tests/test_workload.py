"""Workloads: (prompt, output) pairs drawn jointly from a trace, with a total-length cap that drops or clips."""

from __future__ import annotations

import numpy as np
import pytest

from sim_engine import Simulation, SpecError, load_spec
from sim_engine.spec import resolve_data_path
from sim_engine.workload import ArrivalSource, Trace, cap_pairs, load_trace


def doc(workload: dict) -> dict:
    return {"name": "w", "seed": 5,
            "clients": [{"id": "c", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "replicas": 2}],
            "workload": workload}


def draws(workload: dict, n: int | None = None) -> list[tuple[int, int, int]]:
    spec = load_spec(doc(workload))
    src = ArrivalSource(spec.workload, np.random.SeedSequence(spec.seed).spawn(2)[0], None, n)
    out = []
    while (item := src.next()) is not None:
        out.append(item)
    return out


def trace_rows(name: str) -> Trace:
    return load_trace(resolve_data_path(name, None, "t"), "t")


def test_pairs_are_rows_of_the_trace_and_keep_their_correlation():
    rows = trace_rows("arxiv_summarization")  # long papers get short summaries: log-correlation about -0.48
    pairs = set(zip(rows.prompt_tokens.tolist(), rows.output_tokens.tolist(), strict=True))
    base = {"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 3000}
    got = draws({**base, "lengths": "arxiv_summarization"})
    assert len(got) == 3000
    assert all((p, o) in pairs for _, p, o in got)
    want = np.corrcoef(np.log(rows.prompt_tokens), np.log(rows.output_tokens))[0, 1]
    assert want < -0.4
    assert abs(log_corr(got) - want) < 0.08
    # the old independent draws (still valid specs) lose the correlation and make pairs the trace never had
    independent = draws({**base, "prompt_tokens": {"dist": "empirical", "trace": "arxiv_summarization"},
                         "output_tokens": {"dist": "empirical", "trace": "arxiv_summarization",
                                           "column": "num_decode_tokens"}})
    assert abs(log_corr(independent)) < 0.1
    assert sum((p, o) not in pairs for _, p, o in independent) > 1000


def log_corr(items: list[tuple[int, int, int]]) -> float:
    return float(np.corrcoef(np.log([g[1] for g in items]), np.log([g[2] for g in items]))[0, 1])


def test_cap_drops_whole_pairs():
    rows = trace_rows("azure_conv")
    total = rows.prompt_tokens + rows.output_tokens
    assert (total > 2048).sum() > 100  # the cap bites on this trace
    got = draws({"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 3000,
                 "lengths": {"trace": "azure_conv", "max_total_tokens": 2048, "over_cap": "drop"}})
    kept = set(zip(rows.prompt_tokens[total <= 2048].tolist(), rows.output_tokens[total <= 2048].tolist(),
                   strict=True))
    assert all((p, o) in kept for _, p, o in got)
    # drop is the default
    again = draws({"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 3000,
                   "lengths": {"trace": "azure_conv", "max_total_tokens": 2048}})
    assert again == got


def test_cap_clips_pairs_keeping_their_ratio():
    t = Trace(np.array([0.0, 1.0, 2.0, 3.0]), np.array([100, 3000, 10, 4095]), np.array([50, 1000, 9000, 1]))
    c = cap_pairs(t, 1000, "clip")
    assert c.prompt_tokens.tolist() == [100, 750, 1, 999]  # under the cap: unchanged; over: p * cap // total
    assert c.output_tokens.tolist() == [50, 250, 999, 1]
    assert c.arrived_at.tolist() == t.arrived_at.tolist()
    d = cap_pairs(t, 1000, "drop")
    assert d.prompt_tokens.tolist() == [100] and d.output_tokens.tolist() == [50] and d.arrived_at.tolist() == [0.0]
    got = draws({"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 2000,
                 "lengths": {"trace": "arxiv_summarization", "max_total_tokens": 3000, "over_cap": "clip"}})
    totals = [p + o for _, p, o in got]
    assert max(totals) == 3000 and all(p >= 1 and o >= 1 for _, p, o in got)


def test_arrival_trace_rows_keep_their_own_lengths_under_the_cap():
    rows = trace_rows("azure_code")
    total = rows.prompt_tokens + rows.output_tokens
    got = draws({"arrival": {"process": "trace", "trace": "azure_code"}, "num_requests": 200,
                 "lengths": {"max_total_tokens": 4096}})
    keep = np.flatnonzero(total <= 4096)[:200]
    assert [g[1] for g in got] == rows.prompt_tokens[keep].tolist()
    assert [g[2] for g in got] == rows.output_tokens[keep].tolist()
    assert [g[0] for g in got] == [round(t * 1e9) for t in rows.arrived_at[keep]]


def test_simulation_serves_joint_pairs_with_poisson_and_closed_loop_arrivals():
    rows = trace_rows("azure_conv")
    pairs = set(zip(rows.prompt_tokens.tolist(), rows.output_tokens.tolist(), strict=True))
    for arrival in ({"process": "poisson", "rate": 8.0}, {"process": "closed_loop", "users": 4}):
        sim = Simulation(load_spec(doc({"arrival": arrival, "num_requests": 60,
                                        "lengths": {"trace": "azure_conv", "max_total_tokens": 4096}})))
        sim.run()
        r = sim.request_records()
        assert len(r["idx"]) == 60 and sim.completed == 60
        assert all((int(p), int(o)) in pairs and p + o <= 4096
                   for p, o in zip(r["prompt_tokens"], r["output_tokens"], strict=True))


def test_dotted_override_reaches_inside_the_shorthand():
    d = doc({"arrival": {"process": "poisson", "rate": 1.0}, "num_requests": 5, "lengths": "azure_conv"})
    spec = load_spec(d, {"workload.lengths.max_total_tokens": 1024, "workload.lengths.over_cap": "clip"})
    assert (spec.workload.lengths.trace, spec.workload.lengths.max_total_tokens,
            spec.workload.lengths.over_cap) == ("azure_conv", 1024, "clip")


@pytest.mark.parametrize(("lengths", "extra", "field"), [
    ("azure_conv", {"prompt_tokens": 100}, "workload.lengths"),
    ({"trace": "azure_conv", "over_cap": "trim", "max_total_tokens": 100}, {}, "workload.lengths.over_cap"),
    ({"trace": "azure_conv", "over_cap": "clip"}, {}, "workload.lengths.over_cap"),
    ({"trace": "azure_conv", "max_total_tokens": 1}, {}, "workload.lengths.max_total_tokens"),
    ({"trace": "azure_conv", "max_total_tokens": "big"}, {}, "workload.lengths.max_total_tokens"),
    ({"max_total_tokens": 4096}, {}, "workload.lengths.trace"),
    ({"trace": "azure_conv", "cap": 4096}, {}, "workload.lengths.cap"),
    ({"trace": "no_such_trace.csv"}, {}, "workload.lengths.trace"),
    ({"trace": "azure_code", "max_total_tokens": 3}, {}, "workload.lengths.max_total_tokens"),
    (["azure_conv"], {}, "workload.lengths"),
])
def test_bad_lengths_name_the_field(lengths, extra, field):
    d = doc({"arrival": {"process": "poisson", "rate": 1.0}, "num_requests": 5, "lengths": lengths, **extra})
    with pytest.raises(SpecError) as e:
        Simulation(load_spec(d))
    assert e.value.field == field, e.value
