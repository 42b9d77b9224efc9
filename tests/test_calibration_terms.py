"""benchmarks/calibration_terms.py: its linear host decomposition is the step model's own arithmetic."""

from __future__ import annotations

import numpy as np

from benchmarks.calibration import BUNDLED_DATA, perf_model, predict_step
from benchmarks.calibration_terms import observations, predict
from sim_engine.engines import legacy_host
from sim_engine.hardware import HARDWARE


def test_host_free_prediction_plus_legacy_host_constants_equals_the_calibrated_model():
    obs = observations(BUNDLED_DATA)
    assert len(obs) == 228  # 114 Splitwise llama2-70b configurations, prefill + decode each
    for dev in ("A100-80GB", "H100-SXM"):
        mine = [o for o in obs if o.row.hardware == dev]
        h = legacy_host(dev)
        got = predict(mine, np.array([h["seq_cpu_us"], h["token_cpu_us"], h["sync_us"]]), None)
        want = []
        for o in mine:
            pre, dec = predict_step(perf_model(HARDWARE[dev], o.row.tp), o.row)
            want.append(pre if o.phase == "prefill" else dec)
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_a_candidate_term_adds_only_to_prefill():
    obs = observations(BUNDLED_DATA)
    x = np.array([100.0, 10.0, 20.0])
    with_term = predict(obs, np.append(x, 1.0), "l2_spill_passes")
    without = predict(obs, x, None)
    prefill = np.array([o.phase == "prefill" for o in obs])
    assert np.array_equal(with_term[~prefill], without[~prefill])
    big = np.array([o.phase == "prefill" and o.tokens >= 4096 for o in obs])
    assert (with_term[big] > without[big]).all()  # activations beyond L2 from 4096 tokens on
    assert np.array_equal(with_term[prefill & ~big], without[prefill & ~big])  # <= 2048 tokens fit in L2


def test_a_data_directory_without_the_splitwise_file_is_rejected_naming_the_flag(tmp_path, capsys):
    from benchmarks.calibration_terms import main

    assert main(["--data", str(tmp_path)]) == 2
    assert "--data: no splitwise_perf_model.csv in" in capsys.readouterr().err
