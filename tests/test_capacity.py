"""Capacity search: bisection finds the boundary, the found rate meets the SLOs and the bracket's
top misses them, a looser SLO never lowers the capacity, and bad input names the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from server_fixtures import ROOT, env_with_root

from server.sweeps.capacity import RATE_FIELD, capacity_task, meets, parse_slos, search
from sim_engine import Simulation, SpecError, load_spec

BASE = str(ROOT / "examples" / "specs" / "llama3-8b-h100.yaml")
SMALL = {"workload.num_requests": 60}


@pytest.mark.parametrize("start", [0.5, 7.0, 40.0])
def test_search_finds_a_threshold_within_the_tolerance(start: float) -> None:
    r = search(lambda rate: rate <= 7.3, start, rel_tol=0.02)
    assert r.max_rate <= 7.3 < r.fail_rate and r.fail_rate - r.max_rate <= 0.02 * r.max_rate
    assert all(ok == (rate <= 7.3) for rate, ok in r.probes)


def test_search_reports_zero_or_the_ceiling_at_the_ends() -> None:
    assert search(lambda rate: False, 1.0).max_rate == 0.0
    r = search(lambda rate: True, 1.0, max_rate=50.0)
    assert r.max_rate == 50.0 and r.fail_rate is None


def task(slos: dict) -> dict:
    return {"base": load_spec(BASE).document, "overrides": dict(SMALL), "seeds": [0, 1], "slos": slos, "tol": 0.05}


def test_capacity_meets_the_slo_and_just_above_it_does_not() -> None:
    slos = parse_slos(["ttft_p90=0.3", "tpot_p90=0.05"])
    r = capacity_task(task(slos))
    assert 0 < r["max_rate"] < r["fail_rate"] <= r["max_rate"] * 1.05 + 1e-9

    def ok(rate: float) -> bool:
        out = []
        for seed in (0, 1):
            sim = Simulation(load_spec(BASE, {**SMALL, RATE_FIELD: rate, "seed": seed}))
            sim.run()
            out.append(meets(sim.summary(), slos))
        return all(out)

    assert ok(r["max_rate"]) and not ok(r["fail_rate"])


@pytest.mark.slow
def test_capacity_is_monotone_in_the_slo() -> None:
    caps = [capacity_task(task({"ttft_p90": t}))["max_rate"] for t in (0.1, 0.2, 0.4, 0.8, 1.6)]
    assert all(a <= b for a, b in zip(caps, caps[1:], strict=False)), caps
    assert caps[-1] > caps[0] * 1.5, caps


@pytest.mark.parametrize("item", ["ttft=0.5", "ttft_p95=0.5", "lat_p90=1", "ttft_p90=-1", "ttft_p90=soon"])
def test_bad_slos_name_the_item(item: str) -> None:
    with pytest.raises(SpecError, match="--slo"):
        parse_slos([item])


def test_capacity_needs_a_rate_driven_workload() -> None:
    r = capacity_task({**task({"ttft_p90": 1.0}), "overrides": {
        "workload.arrival": {"process": "closed_loop", "users": 4}, "workload.num_requests": 10}})
    assert r["error"].startswith("workload.arrival.process")


@pytest.mark.slow
def test_cli_ranks_the_configurations_of_a_sweep_by_cost(tmp_path: Path) -> None:
    sweep = tmp_path / "cap.yaml"
    sweep.write_text(yaml.safe_dump({"base": BASE, "set": SMALL,
                                     "grid": {"clients[0].hardware": ["H100-SXM", "L40S"]},
                                     "prices": {"H100-SXM": 4.0, "L40S": 1.2}}))
    out = tmp_path / "cap.json"
    proc = subprocess.run([sys.executable, "-m", "server.cli", "capacity", "--sweep", str(sweep), "--slo",
                           "ttft_p90=0.5", "--slo", "tpot_p90=0.05", "--workers", "2", "--load", "20",
                           "--json", str(out)], cwd=ROOT, env=env_with_root(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = {r["clients[0].hardware"]: r for r in json.loads(out.read_text())["results"]}
    h100, l40s = results["H100-SXM"], results["L40S"]
    assert h100["max_rate"] > l40s["max_rate"] > 0  # the faster GPU serves more
    for r in (h100, l40s):
        assert r["copies_for_load"] * r["max_rate"] >= 20 > (r["copies_for_load"] - 1) * r["max_rate"]
    cheapest = min(results, key=lambda hw: results[hw]["cost_for_load"])
    assert f"cheapest for the load: clients[0].hardware={cheapest}" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "server.cli", "capacity", BASE, "--slo", "ttft_p91=1"], cwd=ROOT,
                         env=env_with_root(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--slo ttft_p91=1" in bad.stderr
