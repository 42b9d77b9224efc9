"""benchmarks/fidelity_transfers.py: published KV transfers set up on the real network model."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from benchmarks.fidelity_transfers import (
    LARGE_BLOCK,
    evaluate,
    is_fit_row,
    line_rate_gbs,
    load_rows,
    simulate_bandwidth,
)
from sim_engine import load_spec
from sim_engine.spec import NIC_EFFICIENCY, TOPOLOGY_DEFAULTS

BUNDLED = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "calibration" / "kv_transfer.csv"


@pytest.fixture(scope="module")
def results():
    got, skipped = evaluate(load_rows(BUNDLED))
    return got, skipped


def test_line_rates_of_the_rows_nic_sets():
    assert line_rate_gbs("16x EFA 200 Gbps") == 400
    assert line_rate_gbs("RDMA (RoCE) 400 Gbps") == 50
    assert line_rate_gbs("4x200 Gbps RoCE") == 100
    assert line_rate_gbs("PCIe GPU<->host DRAM") is None


def test_network_moves_bytes_at_the_link_rate_after_one_latency():
    # 4 threads x 1 MB on a 50 GB/s link with 5 us latency: 4 MB / (5 us + 4 MB / 50 GB/s)
    got = simulate_bandwidth(50.0, 5.0, 4, 1_000_000)
    assert got == pytest.approx(4e6 / (5_000 + 4e6 / 50), rel=1e-6)


def test_every_row_is_used_or_skipped_with_a_reason(results):
    got, skipped = results
    assert len(got) + len(skipped) == 71
    assert all(why for _, _, why in skipped)
    assert len([r for r in got if r.block]) == 36


def test_default_nic_efficiency_is_the_fit_rows_mean_and_the_default_links_use_it(results):
    got, _ = results
    fit = [r for r in got if r.block >= LARGE_BLOCK and is_fit_row(r)]
    assert len(fit) == 2
    assert statistics.mean(r.measured / r.setup.line_gbs for r in fit) == pytest.approx(NIC_EFFICIENCY, abs=0.005)
    assert TOPOLOGY_DEFAULTS["node_link"][0] == pytest.approx(50 * NIC_EFFICIENCY)
    spec = load_spec({"name": "t", "clients": [{"id": "a", "hardware": "H100-SXM", "model": "Llama-3.1-8B"}]})
    assert spec.topology["node_link"][0] == pytest.approx(43.0)


def test_held_out_rows_are_closer_at_the_default_efficiency_than_at_line_rate(results):
    got, _ = results
    held = [r for r in got if r.block >= LARGE_BLOCK and not is_fit_row(r)]
    at_line = statistics.median(abs(r.error) for r in held)
    at_eff = statistics.median(abs(r.error_at(NIC_EFFICIENCY)) for r in held)
    assert len(held) == 16
    assert at_eff < at_line
    assert at_eff < 15.0  # 9.2% when written


def test_kv_block_sizes_match_the_model_presets(results):
    got, _ = results
    blocks = [r for r in got if not r.block]
    assert len(blocks) == 6
    assert all(r.predicted == pytest.approx(r.measured) for r in blocks)
