"""Serving-engine profiles: presets, overrides, host-time overlap, memory as the engine sees it, precision."""

from __future__ import annotations

import numpy as np
import pytest

from sim_engine import Simulation, load_spec
from sim_engine.engines import PROFILES, get_engine
from sim_engine.errors import SpecError
from sim_engine.hardware import get_hardware
from sim_engine.models import get_model, parse_dtype
from sim_engine.perf import AnalyticalPerfModel, TraceDrivenPerfModel, kv_capacity_tokens
from sim_engine.request import RequestInput

A100, H100 = get_hardware("A100-80GB"), get_hardware("H100-SXM")
L8B, L70B = get_model("Llama-3.1-8B"), get_model("Llama-2-70B")


def test_every_profile_has_a_source_and_valid_defaults() -> None:
    assert {"vllm", "vllm-v0", "sglang", "trtllm", "legacy-2023"} <= set(PROFILES)
    for p in PROFILES.values():
        assert p.source and 0 <= p.cpu_overlap <= 1 and 0 < p.gpu_memory_utilization <= 1
        assert p.admission in ("greedy", "reserve") and p.block_size >= 1
    assert PROFILES["trtllm"].admission == "reserve" and PROFILES["vllm"].admission == "greedy"


def test_overrides_replace_fields_and_bad_values_name_the_field() -> None:
    e = get_engine({"preset": "sglang", "cpu_overlap": 0.5, "frontend_us": 0})
    assert e.cpu_overlap == 0.5 and e.frontend_us == 0 and e.block_size == PROFILES["sglang"].block_size
    assert PROFILES["sglang"].cpu_overlap != 0.5  # the preset is untouched
    for doc, field in (({"preset": "vllm", "cpu_overlap": 1.5}, "e.cpu_overlap"),
                       ({"preset": "vllm", "warp": 1}, "e.warp"),
                       ({"preset": "tgi"}, "e.preset"),
                       ({"preset": "vllm", "admission": "lottery"}, "e.admission"),
                       ({"preset": "vllm", "prefix_caching": "on"}, "e.prefix_caching"),
                       ({"preset": "vllm", "step_cpu_us": -1}, "e.step_cpu_us")):
        with pytest.raises(SpecError) as err:
            get_engine(doc, "e")
        assert err.value.field == field
    with pytest.raises(SpecError) as err:
        load_spec({"clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B", "engine": "tgi"}],
                   "workload": {"arrival": {"process": "none"}}})
    assert err.value.field == "clients[0].engine"


def test_scheduler_defaults_come_from_the_engine_and_fields_still_win() -> None:
    doc = {"clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B", "engine": "trtllm"},
                       {"hardware": "H100-SXM", "model": "Llama-3.1-8B", "engine": "trtllm",
                        "scheduler": {"block_size": 16, "admission": "greedy"}}],
           "workload": {"arrival": {"process": "none"}}}
    a, b = load_spec(doc).clients
    assert (a.scheduler.block_size, a.scheduler.admission, a.scheduler.max_num_batched_tokens) == (64, "reserve", 8192)
    assert (b.scheduler.block_size, b.scheduler.admission) == (16, "greedy")
    default = load_spec({"clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B"}],
                         "workload": {"arrival": {"process": "none"}}}).clients[0]
    assert default.engine.name == "vllm" and default.scheduler.max_num_batched_tokens == 8192


@pytest.mark.parametrize("model, engine, scheduler, batching", [
    ("Llama-3.1-8B", "vllm-v0", {}, "chunked"),  # 128K context: chunked prefill on (vLLM PR 6666)
    ("Llama-3.1-8B", "vllm-v0", {"max_model_len": 32768}, "continuous"),  # not above 32K
    ("Llama-2-7B", "vllm-v0", {}, "continuous"),  # 4K context
    ("Llama-3.1-8B", {"preset": "vllm-v0", "num_scheduler_steps": 10}, {}, "continuous"),  # 0.6.0 multi-step
    ("Llama-3.1-8B", "vllm-v0", {"batching": "mixed"}, "mixed"),  # a given policy wins
    ("Llama-3.1-8B", {"preset": "vllm-v0", "chunked_above_len": 0}, {}, "continuous"),
])
def test_vllm_v0_turns_chunked_prefill_on_for_long_context_models(model, engine, scheduler, batching) -> None:
    doc = {"clients": [{"hardware": "A100-80GB", "model": model, "engine": engine, "scheduler": scheduler}],
           "workload": {"arrival": {"process": "none"}}}
    s = load_spec(doc).clients[0].scheduler
    assert s.batching == batching
    assert s.max_num_batched_tokens is None  # the client's default: 2048 chunked, else max_model_len
    with pytest.raises(SpecError) as err:
        get_engine({"preset": "vllm-v0", "chunked_above_len": -1}, "e")
    assert err.value.field == "e.chunked_above_len"


def test_overlapped_host_time_hides_under_gpu_work() -> None:
    serial = get_engine({"preset": "vllm", "cpu_overlap": 0.0, "frontend_us": 0})
    hidden = get_engine({"preset": "vllm", "cpu_overlap": 1.0, "frontend_us": 0})
    gpu_only = get_engine({"preset": "vllm", "step_cpu_us": 0, "seq_cpu_us": 0, "token_cpu_us": 0,
                           "layer_cpu_us": 0})
    ps, ph, pg = (AnalyticalPerfModel(H100, L8B, engine=e) for e in (serial, hidden, gpu_only))
    cpu = ps.host_overhead(64, 64)
    gpu = pg.step((), 64, 64 * 1000).time_s
    assert ps.step((), 64, 64 * 1000).time_s == pytest.approx(gpu + cpu)
    assert ph.step((), 64, 64 * 1000).time_s == pytest.approx(max(gpu, cpu))  # a step is not gpu + cpu


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "vllm-v0"])
def test_decode_steps_equal_step_bit_for_bit_with_overlap(engine: str) -> None:
    for pm in (AnalyticalPerfModel(H100, L8B, engine=engine), AnalyticalPerfModel(A100, L70B, tp=4, engine=engine),
               TraceDrivenPerfModel(A100, get_model("Llama-2-7B"), tp=2, engine=engine)):
        ctx = np.arange(0, 400_000, 9_973, dtype=np.int64)
        for n in (1, 7, 64, 300):
            times, energies = pm.decode_steps(n, ctx)
            for c, t, e in zip(ctx, times, energies, strict=True):
                s = pm.step((), n, int(c))
                assert (s.time_s, s.energy_j) == (t, e)


def test_legacy_profile_keeps_the_2023_host_constants_per_device() -> None:
    pa = AnalyticalPerfModel(A100, L70B, tp=2, engine="legacy-2023")
    ph = AnalyticalPerfModel(H100, L70B, tp=2, engine="legacy-2023")
    assert (pa.engine.seq_cpu_us, pa.engine.sync_us) == (291.0, 35.5)
    assert (ph.engine.seq_cpu_us, ph.engine.sync_us) == (262.0, 25.4)
    assert AnalyticalPerfModel(A100, L70B, tp=2).step((), 8, 8000) == pa.step((), 8, 8000)  # library default


def test_kv_capacity_in_bytes_as_the_engine_sees_it() -> None:
    legacy = kv_capacity_tokens(A100, L70B, 2, 1, 0.9, engine="legacy-2023") // 16
    vllm = kv_capacity_tokens(A100, L70B, 2, 1, 0.9, engine="vllm") // 16
    assert legacy == 381  # the 2023 figure on decimal 80 GB
    # 0.9 x 85.5e9 - 69.0e9 weights - activations - reserve over 163,840 B per token: ~2,400 blocks;
    # the bound without any activation or runtime reserve is 3,040
    assert 2_000 < vllm < 3_100
    for hw in (A100, H100):
        cap = kv_capacity_tokens(hw, get_model("Qwen3-32B"), 1, 1, 0.9, engine="vllm")
        assert cap > 32_768 + 1024 > kv_capacity_tokens(hw, get_model("Qwen3-32B"), 1, 1, 0.9, engine="legacy-2023")
    assert get_hardware("H200").mem_bytes == pytest.approx(150.8e9)
    assert get_hardware("A100-80GB", {"mem_gb": 40}).mem_bytes == 40e9  # a user capacity is taken as seen


def test_qwen3_32b_with_a_32k_prompt_is_served_on_one_gpu() -> None:
    doc = {"clients": [{"hardware": "H100-SXM", "model": "Qwen3-32B"}], "workload": {"arrival": {"process": "none"}}}
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(0, 32_000, 64)])
    sim.run()
    assert sim.summary()["requests"]["completed"] == 1


def test_precision_sets_bytes_and_compute_rate() -> None:
    p = parse_dtype({"weights": "fp8", "kv": "bf16"})
    assert (p.weights, p.kv, p.compute) == ("fp8", "bf16", "fp8")
    m = p.apply(L70B)
    assert (m.weight_bytes_per_param, m.kv_bytes_per_elem) == (1.0, 2.0)
    with pytest.raises(SpecError) as err:
        parse_dtype("fp7", "clients[0].dtype")
    assert err.value.field == "clients[0].dtype"
    bf, f8 = (AnalyticalPerfModel(H100, d.apply(L70B), tp=2, compute_dtype=d.compute, engine="vllm")
              for d in (parse_dtype("bf16"), parse_dtype("fp8")))
    assert f8.step([(0, 8192)], 0, 0).time_s < 0.75 * bf.step([(0, 8192)], 0, 0).time_s
    spec = load_spec({"clients": [{"hardware": "H100-SXM", "model": "Llama-2-70B", "tp": 2, "dtype": "fp8"}],
                      "workload": {"arrival": {"process": "none"}}})
    assert spec.clients[0].model.weight_bytes_per_param == 1.0 and spec.clients[0].compute_dtype == "fp8"
    assert kv_capacity_tokens(H100, m, 2, engine="vllm") > 2 * kv_capacity_tokens(H100, L70B, 2, engine="vllm")


def test_gptj_and_llama33_presets() -> None:
    g = get_model("GPT-J-6B")
    assert g.parallel_block and g.rotary_dim == 64 and abs(g.param_count() - 6.053e9) < 0.01e9
    pm = AnalyticalPerfModel(A100, g, tp=2, engine="vllm")
    seq = AnalyticalPerfModel(A100, get_model("GPT-J-6B", {"parallel_block": False}), tp=2, engine="vllm")
    assert pm.comm_time(128) < seq.comm_time(128)  # one all-reduce per layer, not two
    assert get_model("Llama-3.3-70B").param_count() == get_model("Llama-3.1-70B").param_count()


def test_front_end_time_shows_in_ttft_at_low_load() -> None:
    def ttft(frontend_us: float) -> float:
        doc = {"clients": [{"hardware": "H100-SXM", "model": "Llama-3.1-8B",
                            "engine": {"preset": "vllm", "frontend_us": frontend_us}}],
               "workload": {"arrival": {"process": "none"}}}
        sim = Simulation(load_spec(doc))
        sim.inject([RequestInput(0, 500, 10)])
        sim.run()
        r = sim.request_records()
        return int(r["first_token_ns"][0] - r["arrival_ns"][0])
    assert ttft(5000.0) - ttft(0.0) == 5_000_000


def test_other_names_of_tensorrt_llm_give_its_profile() -> None:
    for name in ("nim", "NIM", "tensorrt-llm", "TRT-LLM"):
        assert get_engine(name) is PROFILES["trtllm"]
    assert get_engine({"preset": "nim", "max_num_seqs": 64}).admission == "reserve"
    with pytest.raises(SpecError) as err:
        get_engine("tgi")
    assert "nim" in str(err.value) and "trtllm" in str(err.value)
