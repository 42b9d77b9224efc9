"""Hardware and model catalogues: presets, overrides, errors, derived sizes."""

from __future__ import annotations

import pytest

from sim_engine.errors import SpecError
from sim_engine.hardware import HARDWARE, get_hardware
from sim_engine.models import MODELS, get_model

REQUIRED_HW = ["A100-40GB", "A100-80GB", "H100-SXM", "H200", "B200", "L40S", "RTX-4090", "MI300X", "TPU-v5e", "Gaudi3",
               "Sapphire-Rapids", "Genoa", "Grace"]
REQUIRED_MODELS = ["Llama-2-7B", "Llama-2-13B", "Llama-2-70B", "Llama-3-8B", "Llama-3-70B", "Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B",
                   "Mistral-7B", "Mixtral-8x7B", "Qwen2.5-7B", "Qwen2.5-72B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B",
                   "DeepSeek-V3", "DeepSeek-R1", "Mixtral-8x22B", "GPT-J-6B", "Llama-3.3-70B", "e5-base", "e5-large", "bge-large", "e5-mistral-7b", "bge-reranker-large"]


@pytest.mark.parametrize("name", REQUIRED_HW)
def test_hardware_presets_construct_with_positive_numbers(name: str) -> None:
    d = get_hardware(name)
    assert d.name == name and d.source
    assert d.tflops and all(v > 0 for v in d.tflops.values())
    for v in (d.mem_gb, d.mem_bw_gbs, d.scaleup_bw_gbs, d.peak_w, d.idle_w, d.compute_eff, d.mem_eff):
        assert v > 0
    assert d.idle_w < d.peak_w and 0 < d.compute_eff <= 1 and 0 < d.mem_eff <= 1
    assert d.peak_flops("bf16") > 0


def test_every_hardware_preset_validates() -> None:
    for name in HARDWARE:
        get_hardware(name)


def test_hardware_lookup_ignores_case() -> None:
    assert get_hardware("h100-sxm") is HARDWARE["H100-SXM"]


def test_hardware_datasheet_numbers() -> None:
    h100 = get_hardware("H100-SXM")
    assert h100.tflops["bf16"] == 989.4 and h100.tflops["fp8"] == 1978.9  # dense, not sparse
    assert (h100.mem_gb, h100.mem_bw_gbs, h100.scaleup_bw_gbs) == (80.0, 3350.0, 450.0)
    assert get_hardware("A100-80GB").mem_bw_gbs == 2039.0
    assert get_hardware("Grace").mem_bw_gbs == 768.0


def test_hardware_describes_only_hardware() -> None:
    """Host (serving-software) time lives in engine profiles, not on devices."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(HARDWARE["H100-SXM"])}
    assert not names & {"step_overhead_us", "seq_overhead_us", "token_overhead_us", "layer_overhead_us", "sync_us"}
    # memory as the driver reports it: 80 GB parts ~79.6 GiB, H200 ~140.4 GiB
    assert HARDWARE["H100-SXM"].mem_bytes / 2**30 == pytest.approx(79.6, abs=0.1)
    assert HARDWARE["H200"].mem_bytes / 2**30 == pytest.approx(140.4, abs=0.1)
    assert 0 < HARDWARE["H100-SXM"].fp8_eff < HARDWARE["H100-SXM"].compute_eff


def test_hardware_overrides_replace_fields() -> None:
    d = get_hardware("A100-80GB", {"mem_gb": 40, "compute_eff": 0.5, "tflops": {"bf16": 100}})
    assert d.mem_gb == 40.0 and isinstance(d.mem_gb, float)
    assert d.compute_eff == 0.5 and d.tflops == {"bf16": 100.0}
    assert HARDWARE["A100-80GB"].mem_gb == 80.0  # the preset is untouched


@pytest.mark.parametrize("overrides, field", [
    ({"warp_drive": 1}, "clients[0].hardware.warp_drive"),
    ({"mem_gb": "lots"}, "clients[0].hardware.mem_gb"),
    ({"mem_gb": -1}, "clients[0].hardware.mem_gb"),
    ({"mem_gb": True}, "clients[0].hardware.mem_gb"),
    ({"compute_eff": 1.5}, "clients[0].hardware.compute_eff"),
    ({"kind": "quantum"}, "clients[0].hardware.kind"),
    ({"tflops": {"bf16": -3}}, "clients[0].hardware.tflops.bf16"),
    ({"idle_w": 5000}, "clients[0].hardware.idle_w"),
])
def test_bad_hardware_overrides_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(SpecError) as e:
        get_hardware("A100-80GB", overrides, field="clients[0].hardware")
    assert e.value.field == field


def test_unknown_hardware_lists_known_names() -> None:
    with pytest.raises(SpecError) as e:
        get_hardware("Z80")
    assert e.value.field == "hardware" and "unknown hardware 'Z80'" in e.value.reason and "H100-SXM" in e.value.reason


@pytest.mark.parametrize("name", REQUIRED_MODELS)
def test_model_presets_construct_with_positive_numbers(name: str) -> None:
    m = get_model(name)
    assert m.name == name and m.source
    for v in (m.n_layers, m.hidden, m.n_heads, m.n_kv_heads, m.head_dim, m.ffn_dim, m.vocab, m.max_context):
        assert v > 0
    assert m.param_count() > 0 and m.weight_bytes() > 0 and m.kv_bytes_per_token() > 0
    assert 0 < m.active_params_per_token() <= m.param_count()


@pytest.mark.parametrize("name, billions", [
    ("Llama-2-7B", 6.74), ("Llama-2-13B", 13.02), ("Llama-2-70B", 68.98), ("Llama-3.1-8B", 8.03), ("Llama-3-8B", 8.03),
    ("Llama-3-70B", 70.55),
    ("Llama-3.1-70B", 70.55), ("Llama-3.1-405B", 405.85), ("Mistral-7B", 7.24), ("Mixtral-8x7B", 46.70),
    ("Qwen2.5-7B", 7.62), ("Qwen2.5-72B", 72.71), ("Qwen3-8B", 8.19), ("Qwen3-32B", 32.76),
    ("DeepSeek-V3", 671.03), ("DeepSeek-R1", 671.03), ("Mixtral-8x22B", 140.63), ("e5-base", 0.1095), ("e5-large", 0.3351), ("bge-reranker-large", 0.5599),
])
def test_parameter_counts_match_published_totals(name: str, billions: float) -> None:
    assert get_model(name).param_count() / 1e9 == pytest.approx(billions, rel=2e-3)


def test_moe_active_parameters() -> None:
    assert get_model("Mixtral-8x7B").active_params_per_token() / 1e9 == pytest.approx(12.88, rel=2e-3)
    assert get_model("Mixtral-8x22B").active_params_per_token() / 1e9 == pytest.approx(39.1, rel=2e-3)  # "39B active"
    assert get_model("DeepSeek-V3").active_params_per_token() / 1e9 == pytest.approx(37.5, rel=1e-2)


def test_kv_bytes_per_token() -> None:
    assert get_model("Llama-3.1-8B").kv_bytes_per_token() == 131072  # 32 layers * 2 * 8 heads * 128 * 2 B
    assert get_model("Llama-2-70B").kv_bytes_per_token() == 327680
    # DeepSeek-V3 caches the MLA latent: 61 layers * (512 + 64) * 2 B
    assert get_model("DeepSeek-V3").kv_bytes_per_token() == 61 * 576 * 2
    assert get_model("Llama-3.1-8B", {"kv_bytes_per_elem": 1}).kv_bytes_per_token() == 65536


def test_model_overrides_and_errors() -> None:
    m = get_model("llama-3.1-8b", {"n_layers": 16})
    assert m.n_layers == 16 and m.kv_bytes_per_token() == 65536
    for overrides, field in (({"n_layers": 2.5}, "model.n_layers"), ({"gated_ffn": 1}, "model.gated_ffn"),
                             ({"n_kv_heads": 5}, "model.n_kv_heads"), ({"nope": 1}, "model.nope"),
                             ({"kind": "diffusion"}, "model.kind")):
        with pytest.raises(SpecError) as e:
            get_model("Llama-3.1-8B", overrides)
        assert e.value.field == field
    with pytest.raises(SpecError) as e:
        get_model("GPT-5")
    assert "unknown model 'GPT-5'" in e.value.reason


def test_every_model_preset_validates() -> None:
    for name in MODELS:
        get_model(name)


@pytest.mark.parametrize("written, preset", [
    ("H100", "H100-SXM"), ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("H100-SXM5-80GB", "H100-SXM"),
    ("A100", "A100-80GB"), ("A100-SXM4-80GB", "A100-80GB"), ("A100 SXM4 40GB", "A100-40GB"),
    ("H200 141GB", "H200"), ("h200-sxm", "H200"), ("NVIDIA L40S", "L40S"), ("GeForce RTX 4090", "RTX-4090"),
    ("AMD Instinct MI300X", "MI300X"),
])
def test_hardware_as_datasheets_and_nvidia_smi_name_it(written: str, preset: str) -> None:
    assert get_hardware(written).name == preset


@pytest.mark.parametrize("written, preset", [
    ("meta-llama/Llama-3.1-8B-Instruct", "Llama-3.1-8B"), ("Meta-Llama-3-8B-Instruct", "Llama-3-8B"),
    ("meta-llama/Llama-2-70b-chat-hf", "Llama-2-70B"), ("mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
    ("Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B"), ("EleutherAI/gpt-j-6b", "GPT-J-6B"),
    ("deepseek-ai/DeepSeek-R1", "DeepSeek-R1"), ("Llama-3.3-70B-Instruct", "Llama-3.3-70B"),
])
def test_models_as_hugging_face_names_them(written: str, preset: str) -> None:
    assert get_model(written).name == preset


@pytest.mark.parametrize("kind, written, hint", [
    ("hardware", "H100 PCIe", ""),  # another part (PCIe card, 350 W): not mapped to the SXM preset
    ("hardware", "A100 80GB PCIe", ""),
    ("model", "DeepSeek-R1-Distill-Llama-70B", ""),  # another architecture
    ("model", "Llama-3.1-405B-Instruct-FP8", "dtype: fp8"),  # a precision, not a model
    ("model", "x" * 100_000, ""),
    ("hardware", "H100 " * 20_000, ""),
])
def test_other_names_stay_unknown_and_the_error_lists_the_presets(kind: str, written: str, hint: str) -> None:
    with pytest.raises(SpecError) as err:
        (get_hardware if kind == "hardware" else get_model)(written)
    assert err.value.field == kind and "known: " in err.value.reason and hint in err.value.reason
    assert len(str(err.value)) < 1000
