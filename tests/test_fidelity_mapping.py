"""How benchmarks/fidelity.py turns published rows into simulations (the mapping, not the figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fidelity  # noqa: E402


@pytest.fixture(scope="module")
def cases() -> list[fidelity.Case]:
    return fidelity.build_cases(fidelity.DEFAULT_DATA)[0]


def test_mlperf_rows_are_long_runs_reported_in_their_steady_state(cases):
    mlperf = [c for c in cases if c.source == "mlperf-v4.1"]
    assert mlperf and all(c.long_run for c in mlperf)
    for c in mlperf:
        if c.kind == "rate":
            assert c.n == int(c.rate * fidelity.MLPERF_SERVER_S)  # not a 40-s slice of a 40-min run


def test_vllm_blog_row_runs_the_pre_0_6_engine_with_serial_host_time(cases):
    (blog,) = [c for c in cases if c.source == "vllm-blog-v0.6"]
    assert blog.engine_fields == {"cpu_overlap": 0.0}
    serial = fidelity.simulate(blog)["tpot_mean"]
    overlapped = fidelity.simulate(blog, {"cpu_overlap": fidelity.PROFILES["vllm-v0"].cpu_overlap})["tpot_mean"]
    assert serial > overlapped * 1.05


def _offline(long_run: bool) -> fidelity.Case:
    return fidelity.Case(("t", long_run), "test", "trtllm", "H100-SXM", "Llama-3.1-8B", 1, 1, None, "offline",
                         600, (512, 128), batch=64, scheduler={"max_num_seqs": 64}, long_run=long_run)


def test_steady_state_throughput_leaves_out_ramp_up_and_drain():
    whole = fidelity.simulate(_offline(False))["req_per_s"]
    steady = fidelity.simulate(_offline(True))["req_per_s"]
    # the whole run includes the all-prefill start and the draining tail, both slower than steady state
    assert steady > whole * 1.02


def test_nemo_rows_run_the_python_session_runtime_and_mlperf_the_executor(cases):
    """NeMo's TRT-LLM export drives GenerationSession (a Python loop per step); MLPerf the C++ executor."""
    assert {c.engine for c in cases if c.source == "nemo-trtllm"} == {"trtllm-py"}
    assert {c.engine for c in cases if c.source == "mlperf-v4.1"} == {"trtllm"}
    py, cpp = fidelity.PROFILES["trtllm-py"], fidelity.PROFILES["trtllm"]
    assert (1 - py.cpu_overlap) * py.step_cpu_us > (1 - cpp.cpu_overlap) * cpp.step_cpu_us
    assert py.allreduce == cpp.allreduce == "custom"
