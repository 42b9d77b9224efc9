"""The benchmarks run and print their headline figure last (smoke runs: no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("script", "args", "last"), [
    ("sim_speed.py", ["--smoke"], r"simulated_requests_per_wall_second=\d+"),
    ("cosim_overhead.py", ["--smoke"], r"lockstep_overhead_ratio=[\d.]+"),
    ("calibration.py", [], r"median_abs_pct_error=[\d.]+"),
    ("calibration_terms.py", [], r"baseline_worst_heldout_p90=[\d.]+"),
    ("scale_out.py", ["--smoke"], r"scale_out_efficiency=[\d.]+"),
    ("config_sweep.py", ["--hardware", "H100-SXM", "--model", "Llama-3.1-8B", "--sim"], r"config_sweep_flags=\d+"),
    ("fidelity_transfers.py", ["--data", str(ROOT / "benchmarks" / "data" / "calibration" / "kv_transfer.csv")],
     r"kv_transfer_median_abs_pct_error=[\d.]+"),
])
def test_benchmark_prints_its_figure_last(script, args, last):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(last, lines[-1]), lines[-3:]


def _headline(script: str, *args: str) -> float:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1].split("=")[1])


def test_fidelity_smoke_subset_stays_within_its_error_bound():
    """NeMo static batches and SGLang/vLLM request-rate rows from the bundled serving_engines.csv."""
    assert _headline("fidelity.py", "--smoke") < 20.0  # measured 12.6% when written


def test_calibration_on_the_bundled_splitwise_rows_stays_within_its_error_bound():
    """The step latencies alone (the data a fresh clone ships), under the legacy-2023 engine."""
    assert _headline("calibration.py", "--data", str(ROOT / "benchmarks" / "data" / "calibration")) < 10.0


def test_scale_out_rejects_a_bad_size_naming_the_flag():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_out.py"), "--clients", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--clients: must be >= 1, got 0" in out.stderr, out.stderr
