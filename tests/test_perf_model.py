"""Performance models: contract (decode_steps == step), validation, monotonicity, hand checks."""

from __future__ import annotations

import csv
import dataclasses
import statistics

import numpy as np
import pytest

from sim_engine.errors import SpecError
from sim_engine.hardware import get_hardware
from sim_engine.models import get_model
from sim_engine.perf import (
    AnalyticalPerfModel,
    TraceDrivenPerfModel,
    build_perf_model,
    kv_capacity_tokens,
)
from sim_engine.perf.trace_driven import DATA_DIR

A100, H100 = get_hardware("A100-80GB"), get_hardware("H100-SXM")
L8B, L70B = get_model("Llama-3.1-8B"), get_model("Llama-2-70B")


def _models() -> list[tuple[str, object]]:
    return [
        ("analytical-8b", AnalyticalPerfModel(H100, L8B)),
        ("analytical-70b-tp4", AnalyticalPerfModel(A100, L70B, tp=4)),
        ("analytical-mixtral-tp2", AnalyticalPerfModel(H100, get_model("Mixtral-8x7B"), tp=2)),
        ("analytical-deepseek-tp8", AnalyticalPerfModel(get_hardware("H200"), get_model("DeepSeek-V3"), tp=8)),
        ("analytical-70b-tp2-pp2", AnalyticalPerfModel(H100, L70B, tp=2, pp=2)),
        ("splitwise-70b-tp4", TraceDrivenPerfModel(H100, L70B, tp=4)),
        ("vidur-7b-tp2", TraceDrivenPerfModel(A100, get_model("Llama-2-7B"), tp=2)),
    ]


@pytest.mark.parametrize("name, pm", _models())
def test_decode_steps_equal_step_bit_for_bit(name: str, pm) -> None:
    for n in (1, 2, 7, 32, 64, 100, 256):
        ctx = np.array([0, 1, n * 17, n * 575, n * 1000 + 3, n * 4000, n * 9000, 10**7], dtype=np.int64)
        times, energies = pm.decode_steps(n, ctx)
        assert times.dtype == np.float64 and times.shape == ctx.shape
        for s, t, e in zip(ctx.tolist(), times.tolist(), energies.tolist(), strict=True):
            cost = pm.step((), n, s)
            assert cost.time_s == t, (name, n, s)
            assert cost.energy_j == e, (name, n, s)
    t0, e0 = pm.decode_steps(0, np.array([5, 6]))
    assert t0.tolist() == [0.0, 0.0] and pm.step((), 0, 0).time_s == 0.0


def test_build_perf_model_kinds_and_errors() -> None:
    assert isinstance(build_perf_model(H100, L8B), AnalyticalPerfModel)
    assert isinstance(build_perf_model(H100, L70B, tp=2, kind="trace"), TraceDrivenPerfModel)
    pm = build_perf_model(H100, L8B, step_overhead_s=0.0, seq_overhead_s=0.0)
    assert pm.step_overhead_s == 0.0
    with pytest.raises(SpecError) as e:
        build_perf_model(H100, L8B, kind="magic")
    assert e.value.field == "perf.kind"
    with pytest.raises(SpecError) as e:
        build_perf_model(H100, L8B, warp=9)
    assert e.value.field == "perf.warp"
    with pytest.raises(SpecError) as e:
        build_perf_model(H100, L8B, kind="trace")  # nothing bundled for Llama-3.1-8B
    assert e.value.field == "perf.trace_path"
    with pytest.raises(SpecError) as e:
        build_perf_model(H100, L8B, kind="trace", trace_path="/nonexistent.csv")
    assert e.value.field == "perf.trace_path"
    with pytest.raises(SpecError) as e:
        build_perf_model(H100, L8B, step_overhead_s=-1.0)
    assert e.value.field == "perf.step_overhead_s"


def test_parallelism_validation() -> None:
    with pytest.raises(SpecError) as e:
        AnalyticalPerfModel(H100, L8B, tp=3)
    assert e.value.field == "tp" and "heads" in e.value.reason
    with pytest.raises(SpecError) as e:  # 28 heads split by 7, but 4 KV heads neither divide nor split 7 ways
        AnalyticalPerfModel(H100, get_model("Qwen2.5-7B"), tp=7)
    assert e.value.field == "tp" and "KV heads" in e.value.reason
    AnalyticalPerfModel(H100, L8B, tp=16)  # 8 KV heads replicated over 16 ranks, as vLLM does
    with pytest.raises(SpecError) as e:
        AnalyticalPerfModel(H100, L8B, pp=33)
    assert e.value.field == "pp"
    with pytest.raises(SpecError) as e:
        AnalyticalPerfModel(H100, L8B, tp=0)
    assert e.value.field == "tp"


def test_kv_capacity_and_models_that_do_not_fit() -> None:
    with pytest.raises(SpecError) as e:
        kv_capacity_tokens(get_hardware("A100-40GB"), get_model("Llama-3.1-405B"), 1, 1, 0.9)
    assert e.value.field == "model" and "does not fit" in e.value.reason
    with pytest.raises(SpecError):
        AnalyticalPerfModel(H100, get_model("DeepSeek-V3"), tp=8).max_kv_tokens()  # 671 GB of FP8 > 8 x 72 GB
    cap = kv_capacity_tokens(H100, L8B, 1, 1, 0.9)
    # (0.9 * 80 GB - 16.1 GB weights - ~1.9 GB reserve) / 128 KiB per token
    assert 380_000 < cap < 440_000
    assert kv_capacity_tokens(H100, L8B, 2, 1, 0.9) > 2 * cap  # weights shard, KV heads shard
    assert kv_capacity_tokens(H100, L8B, 1, 1, 0.9, activation_reserve_frac=0.0) > cap
    assert AnalyticalPerfModel(H100, L70B, tp=4).max_kv_tokens(0.9) == kv_capacity_tokens(H100, L70B, 4, 1, 0.9)
    assert kv_capacity_tokens(get_hardware("H200"), get_model("DeepSeek-V3"), 8, 1, 0.9) > 0


def _shapes() -> list[tuple[list[tuple[int, int]], int, int]]:
    return [([(0, 1)], 0, 0), ([(0, 512)], 0, 0), ([(0, 8192)], 0, 0), ([(4096, 512)], 8, 8000),
            ([], 1, 100), ([], 32, 32 * 2000), ([], 256, 256 * 1000), ([(0, 128)] * 16, 0, 0)]


@pytest.mark.parametrize("model, tp", [(L8B, 1), (L70B, 4), (get_model("Mixtral-8x7B"), 2), (get_model("Qwen3-32B"), 2)])
def test_faster_device_is_never_slower(model, tp: int) -> None:
    slow, fast = AnalyticalPerfModel(A100, model, tp=tp), AnalyticalPerfModel(H100, model, tp=tp)
    for prefills, n, ctx in _shapes():
        assert fast.step(prefills, n, ctx).time_s <= slow.step(prefills, n, ctx).time_s


def test_more_work_is_never_faster() -> None:
    for pm in (AnalyticalPerfModel(H100, L8B), AnalyticalPerfModel(A100, L70B, tp=8),
               AnalyticalPerfModel(H100, get_model("DeepSeek-V3"), tp=8)):
        prev = 0.0
        for tokens in (1, 2, 16, 100, 512, 513, 2048, 8192, 32768):
            t = pm.step([(0, tokens)], 0, 0).time_s
            assert t >= prev
            prev = t
        prev = 0.0
        for n in (1, 2, 8, 64, 256, 1024):
            t = pm.step((), n, n * 1000).time_s
            assert t >= prev
            prev = t
        times, _ = pm.decode_steps(16, np.arange(0, 16 * 50_000, 16 * 997))
        assert np.all(np.diff(times) >= 0)
        assert pm.step([(1000, 512)], 0, 0).time_s >= pm.step([(0, 512)], 0, 0).time_s  # past context costs


def test_hand_computed_gemm_roofline() -> None:
    dev = dataclasses.replace(A100, tflops={"bf16": 100.0}, mem_bw_gbs=1000.0, compute_eff=0.5, mem_eff=0.5,
                              gemm_ramp_tokens=0.0, kernel_latency_us=2.0)
    pm = AnalyticalPerfModel(dev, L8B)  # bf16 weights and activations: 2 bytes each
    time, compute, memory, _ = pm.gemm(1000, 1e6, 1000, 1000)
    assert compute == pytest.approx(2 * 1000 * 1e6 / (100e12 * 0.5))  # 40 us: compute bound
    assert memory == pytest.approx((1e6 * 2 + 1000 * 2000 * 2) / (1000e9 * 0.5))  # 12 us
    assert time == pytest.approx(40e-6 + 2e-6)
    time, compute, memory, _ = pm.gemm(1, 1e6, 1000, 1000)
    assert time == pytest.approx((1e6 * 2 + 2000 * 2) / 5e11 + 2e-6)  # weight read bound


def test_step_cost_breakdown() -> None:
    pm = AnalyticalPerfModel(H100, L70B, tp=4)
    prefill = pm.step([(0, 4096)], 0, 0)
    decode = pm.step((), 8, 8 * 1000)
    assert prefill.compute_bound and not decode.compute_bound
    assert prefill.comm_s > decode.comm_s > 0
    for c in (prefill, decode):
        assert c.time_s > max(c.compute_s, c.memory_s) and c.energy_j > 0
        idle = 4 * H100.idle_w * c.time_s
        assert idle < c.energy_j <= 4 * H100.peak_w * c.time_s
    assert AnalyticalPerfModel(H100, L8B).step((), 1, 0).comm_s == 0.0  # no collectives at tp=1
    pp2 = AnalyticalPerfModel(H100, L70B, tp=2, pp=2)
    assert pp2.n_devices == 4 and pp2.step([(0, 512)], 0, 0).comm_s > 0


def test_encoder_models_cost_prefill_only() -> None:
    pm = build_perf_model(get_hardware("Grace"), get_model("e5-base"))
    c = pm.step([(0, 128)] * 8, 0, 0)
    assert 0 < c.time_s < 1.0
    big = build_perf_model(get_hardware("Grace"), get_model("e5-mistral-7b")).step([(0, 128)] * 8, 0, 0)
    assert big.time_s > c.time_s


def _splitwise_median(hardware: str, tp: int, prompt: int, batch: int, output: int, column: str) -> float:
    with open(DATA_DIR / "splitwise_llama2-70b.csv", newline="") as f:
        vals = [float(r[column]) for r in csv.DictReader(f)
                if (r["hardware"], int(r["tensor_parallel"]), int(r["prompt_size"]), int(r["batch_size"]),
                    int(r["token_size"])) == (hardware, tp, prompt, batch, output)]
    return statistics.median(vals) / 1e3


def test_trace_model_reproduces_splitwise_points() -> None:
    pm = TraceDrivenPerfModel(A100, L70B, tp=4)
    assert pm.format == "splitwise"
    measured = _splitwise_median("a100-80gb", 4, 128, 1, 128, "prompt_time")
    assert pm.step([(0, 128)], 0, 0).time_s == pytest.approx(measured, rel=0.01)
    measured = _splitwise_median("a100-80gb", 4, 512, 16, 128, "token_time")  # batch 16, mean context 575
    assert pm.step((), 16, 16 * 575).time_s == pytest.approx(measured, rel=0.01)
    measured = _splitwise_median("a100-80gb", 4, 4096, 1, 128, "token_time")
    assert pm.step((), 1, 4096 + 63).time_s == pytest.approx(measured, rel=0.01)


def test_trace_model_falls_back_outside_the_measured_range() -> None:
    pm = TraceDrivenPerfModel(A100, L70B, tp=2)
    ana = AnalyticalPerfModel(A100, L70B, tp=2)
    assert pm.step([(0, 40000)], 0, 0) == ana.step([(0, 40000)], 0, 0)  # beyond 16384 tokens measured at tp2
    assert pm.step([(0, 64)], 0, 0) == ana.step([(0, 64)], 0, 0)  # below the 128-token prompt
    assert pm.step((), 65, 65 * 600).time_s == ana.step((), 65, 65 * 600).time_s  # batch 64 is the largest
    assert pm.step((), 1, 20000).time_s == ana.step((), 1, 20000).time_s  # context beyond the sweep
    assert pm.step((), 4, 4 * 600).time_s != ana.step((), 4, 4 * 600).time_s  # inside: measured
    vid = TraceDrivenPerfModel(H100, get_model("Llama-2-7B"), tp=1)
    ana7 = AnalyticalPerfModel(H100, get_model("Llama-2-7B"))
    assert vid.format == "vidur"
    assert vid.step([(0, 5000)], 0, 0) == ana7.step([(0, 5000)], 0, 0)
    assert vid.step([(0, 512)], 0, 0).time_s != ana7.step([(0, 512)], 0, 0).time_s


def test_vidur_trace_sums_the_measured_operators() -> None:
    pm = TraceDrivenPerfModel(H100, get_model("Llama-2-7B"), tp=1, step_overhead_s=0.0, seq_overhead_s=0.0)
    with open(DATA_DIR / "vidur_h100_Llama-2-7b-hf_mlp.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["num_tensor_parallel_workers"] == "1" and r["num_tokens"] == "512"]
    ops = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
           "mlp_up_proj", "mlp_act", "mlp_down_proj", "add", "add")
    layer = statistics.median(sum(float(r[f"time_stats.{op}.median"]) for op in ops) for r in rows) * 1e-3
    fb = pm.fallback
    rest = pm.step([(0, 512)], 0, 0).time_s - fb.prefill_attention([(0, 512)])[0] - fb.lm_head(1)[0]
    rest -= fb.host_overhead(512, 1)
    assert rest == pytest.approx(32 * layer, rel=0.02)  # plus the embedding and final norm, a few %


def test_trace_model_validates_its_file() -> None:
    with pytest.raises(SpecError) as e:
        TraceDrivenPerfModel(H100, L8B, tp=1, trace_path=DATA_DIR / "vidur_h100_Llama-2-7b-hf_mlp.csv")
    assert e.value.field == "perf.trace_path" and "n_kv_head" in e.value.reason
    with pytest.raises(SpecError) as e:
        TraceDrivenPerfModel(H100, L70B, tp=1)  # splitwise has TP 2/4/8 only
    assert e.value.field == "perf.trace_path" and "tp=1" in e.value.reason
    with pytest.raises(SpecError) as e:
        TraceDrivenPerfModel(H100, L70B, tp=2, trace_format="vidur")
    assert e.value.field == "perf.trace_path"
