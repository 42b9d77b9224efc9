"""Device catalogue: peak rates, memory, links, power and achievable efficiency.

A ``Device`` is one accelerator (or CPU socket) as a performance model sees it.
Peak numbers are vendor datasheet values (dense, no structured sparsity, decimal
units: TFLOPS = 1e12 FLOP/s, GB/s = 1e9 B/s, GB = 1e9 B). ``mem_gb`` is the datasheet
capacity; ``mem_visible_gb`` what the driver reports to a serving engine (an "80 GB" part
is 80 GiB less the driver's reservation, ~85.5e9 bytes), which engine profiles size the KV
cache from. The efficiency fields turn peaks into achievable rates; for A100 and H100 they
are fitted by ``benchmarks/calibration.py --fit`` against the public measurements in
``../shared/calibration`` (see ``_A100_FIT`` / ``_H100_FIT``); every other part borrows the
constants of its nearest calibrated relative, and says so in ``calibrated``. Host (CPU)
time of the serving software is not hardware: it lives in ``sim_engine/engines.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sim_engine.errors import SpecError
from sim_engine.preset_names import hardware_aliases

DEVICE_KINDS = ("gpu", "tpu", "asic", "cpu", "pim")


@dataclass(frozen=True)
class Device:
    """One device of a client; a client of N devices is N of these joined by the scale-up link."""

    name: str
    kind: str
    tflops: dict[str, float] = field(hash=False)  # dtype -> dense peak TFLOPS
    mem_gb: float  # device memory (HBM/GDDR/DRAM), decimal GB
    mem_bw_gbs: float  # peak device-memory bandwidth, decimal GB/s
    scaleup_bw_gbs: float  # per-device unidirectional scale-up bandwidth (NVLink, IF, ICI)
    scaleup_latency_us: float  # per-hop latency of a collective step on that link
    idle_w: float  # power while powered and waiting
    peak_w: float  # board power limit (TDP/TBP)
    compute_eff: float  # achievable fraction of peak FLOPS for large GEMMs
    mem_eff: float  # achievable fraction of peak memory bandwidth for streaming ops
    source: str
    gemm_ramp_tokens: float = 64.0  # GEMM efficiency at M tokens = compute_eff * M / (M + ramp)
    kernel_latency_us: float = 4.0  # fixed device time per kernel (launch gap + tail)
    attn_eff: float = 0.5  # achievable fraction of peak FLOPS for fused (flash) attention
    comm_eff: float = 0.6  # achievable fraction of scaleup_bw_gbs in collectives
    comm_base_us: float = 10.0  # fixed cost of one NCCL collective launched from the host (no CUDA graph)
    comm_graph_us: float = 10.0  # fixed cost of one NCCL collective replayed from a CUDA graph (kernel only)
    comm_custom_us: float = 0.0  # fixed cost of a one-shot custom all-reduce kernel (0: none on this link)
    host_bw_gbs: float = 32.0  # device <-> host link (PCIe), unidirectional
    calibrated: str = ""  # how the efficiency fields were obtained
    mem_visible_gb: float = 0.0  # memory the driver reports to the engine, decimal GB (0: mem_gb)
    fp8_eff: float = 0.0  # achievable fraction of the fp8 peak for large GEMMs (0: compute_eff)

    @property
    def mem_bytes(self) -> float:
        """Device memory as the serving engine sees it (torch.cuda.mem_get_info total), bytes."""
        return (self.mem_visible_gb or self.mem_gb) * 1e9

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for ``dtype``; fp8/int8 fall back to bf16 when the part has no fast path."""
        for key in (dtype, "bf16", "fp16", "fp32"):
            if key in self.tflops:
                return self.tflops[key] * 1e12
        raise SpecError("hardware.tflops", f"{self.name} has no peak for dtype {dtype!r}")

    def validate(self, where: str = "hardware") -> None:
        """Raise SpecError naming ``where.<field>`` for the first impossible value."""
        if self.kind not in DEVICE_KINDS:
            raise SpecError(f"{where}.kind", f"must be one of {', '.join(DEVICE_KINDS)}, got {self.kind!r}")
        if not self.tflops:
            raise SpecError(f"{where}.tflops", "needs at least one dtype")
        for dtype, v in self.tflops.items():
            if not isinstance(dtype, str) or _not_number(v) or v <= 0:
                raise SpecError(f"{where}.tflops.{dtype}", f"must be a positive number, got {v!r}")
        if self.mem_visible_gb < 0:
            raise SpecError(f"{where}.mem_visible_gb", "must not be negative")
        for name in ("mem_gb", "mem_bw_gbs", "scaleup_bw_gbs", "peak_w", "host_bw_gbs"):
            if getattr(self, name) <= 0:
                raise SpecError(f"{where}.{name}", "must be positive")
        if not 0 <= self.fp8_eff <= 1:
            raise SpecError(f"{where}.fp8_eff", f"must be in [0, 1], got {self.fp8_eff}")
        for name in ("compute_eff", "mem_eff", "attn_eff", "comm_eff"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise SpecError(f"{where}.{name}", f"must be in (0, 1], got {v}")
        for name in ("comm_base_us", "comm_graph_us", "comm_custom_us"):
            v = getattr(self, name)
            if not 0 <= v <= 1e6:  # also rejects NaN
                raise SpecError(f"{where}.{name}", f"must be in [0, 1e6] us, got {v}")
        if self.idle_w > self.peak_w:
            raise SpecError(f"{where}.idle_w", f"idle power {self.idle_w} W exceeds peak {self.peak_w} W")


# --- fitted constants -------------------------------------------------------------------------
# Obtained with `PYTHONPATH=. python benchmarks/calibration.py --fit`, per device, each stage a
# least-squares (or least-absolute) fit in log space over many rows, never one row:
#  1. compute_eff, gemm_ramp_tokens, mem_eff, kernel_latency_us: every attn_pre_proj /
#     attn_post_proj / mlp_up_proj / mlp_down_proj median of the Vidur mlp.csv profiles
#     (a100: 7 models, h100: 5 models; TP 1-8; 1 to 4096/32768 tokens);
#  2. comm_eff, comm_base_us, scaleup_latency_us: every single-node row of Vidur
#     network/<dev>_dgx/all_reduce.csv (2, 4 and 8 GPUs, 2 KB - 64 MB);
#  3. attn_eff: FlashAttention-2 TFLOPS / bf16 peak from hardware_ceilings.csv (a measured
#     ceiling, not a fit);
#  4. comm_graph_us, comm_custom_us: not fitted; the small-message fixed cost of an all-reduce that
#     no host launch precedes (sourced numbers, docs/FIDELITY.md "Tensor-parallel all-reduce"):
#     NCCL replayed from a CUDA graph = the 2-GPU small-message floor of the same Vidur files (h100 6-7
#     us, a100 10 us; nccl-tests in a CUDA graph on HGX H100, 2 GPUs: ~6 us, NVIDIA/nccl#1259); the
#     one-shot custom kernel (vLLM custom_all_reduce, SGLang, TensorRT-LLM ONESHOT) on H100: 7 us at
#     512 KB TP2 in a CUDA graph (vllm#24111), 7.0 us at 74 KB TP2 (TRT-LLM kernel, FlagGems-vllm#773),
#     less this model's hop and bandwidth terms = 5.5 us; A100 has no public measurement here: H100's
#     5.5 us x the a100/h100 ratio of those floors (10/7) = 8 us.
# The 2023 stack's host overheads fitted on the Splitwise steps with these constants held fixed
# are the ``legacy-2023`` engine profile (sim_engine/engines.py).
_A100_FIT: dict[str, Any] = {
    "compute_eff": 0.741, "gemm_ramp_tokens": 82.2, "mem_eff": 0.811, "kernel_latency_us": 6.82,
    "comm_eff": 0.533, "comm_base_us": 39.9, "scaleup_latency_us": 0.281, "comm_graph_us": 10.0,
    "comm_custom_us": 8.0,
    "attn_eff": 0.575,
    "calibrated": "fitted (benchmarks/calibration.py --fit): Vidur a100 GEMMs + DGX-A100 all-reduce, "
    "FA2 ceiling",
}
_H100_FIT: dict[str, Any] = {
    "compute_eff": 0.756, "gemm_ramp_tokens": 172.0, "mem_eff": 0.961, "kernel_latency_us": 6.50,
    "comm_eff": 0.784, "comm_base_us": 28.1, "scaleup_latency_us": 0.222, "comm_graph_us": 7.0,
    "comm_custom_us": 5.5,
    "attn_eff": 0.333,
    "calibrated": "fitted (benchmarks/calibration.py --fit): Vidur h100 GEMMs + DGX-H100 all-reduce, "
    "FA2 ceiling",
}


def _borrow(fit: Mapping[str, Any], note: str, **changes: Any) -> dict[str, Any]:
    """The fitted constants of a calibrated relative, for a part with no public measurements here."""
    out = dict(fit)
    out.update(changes)
    out["calibrated"] = f"not measured; {note}"
    return out


_NV_DS = "NVIDIA datasheet"
# fp8_eff: median over the square cuBLASLt FP8 GEMMs with m >= 4096 (5 shapes per part) of
# hardware_ceilings.csv (Azure ND H100 v5 / ND H200 v5) divided by the fp8 peak and by the GEMM
# ramp factor at that size, i.e. the large-GEMM asymptote in the same form as compute_eff.
_FP8_EFF = {"H100-SXM": 0.70, "H200": 0.68}
# mem_visible_gb: total memory the CUDA driver reports (nvidia-smi / torch.cuda.mem_get_info), decimal
# GB: 80 GiB parts report ~79.6 GiB = 85.5e9 B, H200 ~140.4 GiB = 150.8e9 B, A100-40GB 39.5 GiB,
# L40S 45 GiB, RTX 4090 23.6 GiB, MI300X 191.7 GiB; B200 ~178 GiB; TPU v5e 16 GiB.
HARDWARE: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            name="A100-40GB", kind="gpu",
            tflops={"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
            mem_gb=40.0, mem_bw_gbs=1555.0, scaleup_bw_gbs=300.0, idle_w=50.0, peak_w=400.0,
            host_bw_gbs=32.0, mem_visible_gb=42.4,
            source=f"{_NV_DS}: A100 Tensor Core GPU (SXM4 40GB), NVLink3 600 GB/s bidir",
            **_borrow(_A100_FIT, "A100-80GB fit (same die, HBM2 instead of HBM2e)"),
        ),
        Device(
            name="A100-80GB", kind="gpu",
            tflops={"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "int8": 624.0},
            mem_gb=80.0, mem_bw_gbs=2039.0, scaleup_bw_gbs=300.0, idle_w=55.0, peak_w=400.0,
            host_bw_gbs=32.0, mem_visible_gb=85.5,
            source=f"{_NV_DS}: A100 Tensor Core GPU (SXM4 80GB), NVLink3 600 GB/s bidir",
            **_A100_FIT,
        ),
        Device(
            name="H100-SXM", kind="gpu",
            tflops={"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
            mem_gb=80.0, mem_bw_gbs=3350.0, scaleup_bw_gbs=450.0, idle_w=70.0, peak_w=700.0,
            host_bw_gbs=64.0, mem_visible_gb=85.5, fp8_eff=_FP8_EFF["H100-SXM"],
            source=f"{_NV_DS}: H100 Tensor Core GPU (SXM5 80GB), NVLink4 900 GB/s bidir",
            **_H100_FIT,
        ),
        Device(
            name="H200", kind="gpu",
            tflops={"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9, "int8": 1978.9},
            mem_gb=141.0, mem_bw_gbs=4800.0, scaleup_bw_gbs=450.0, idle_w=75.0, peak_w=700.0,
            host_bw_gbs=64.0, mem_visible_gb=150.8, fp8_eff=_FP8_EFF["H200"],
            source=f"{_NV_DS}: H200 Tensor Core GPU (SXM 141GB), NVLink4 900 GB/s bidir",
            **_borrow(_H100_FIT, "H100-SXM fit (same GH100 die, faster HBM3e)"),
        ),
        Device(
            name="B200", kind="gpu",
            tflops={"tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0, "int8": 4500.0},
            mem_gb=180.0, mem_bw_gbs=8000.0, scaleup_bw_gbs=900.0, idle_w=120.0, peak_w=1000.0,
            host_bw_gbs=64.0, mem_visible_gb=191.5,
            source=f"{_NV_DS}: DGX B200 (1,440 GB, 64 TB/s over 8 GPUs), HGX B200 per-GPU dense rates, "
            "NVLink5 1.8 TB/s bidir",
            **_borrow(_H100_FIT, "H100-SXM fit assumed"),
        ),
        Device(
            name="L40S", kind="gpu",
            tflops={"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0, "int8": 733.0},
            mem_gb=48.0, mem_bw_gbs=864.0, scaleup_bw_gbs=32.0, idle_w=35.0, peak_w=350.0,
            host_bw_gbs=32.0, mem_visible_gb=48.3,
            source=f"{_NV_DS}: L40S (GDDR6 48GB, no NVLink: PCIe Gen4 x16 is the scale-up link)",
            **_borrow(_A100_FIT, "A100-80GB fit assumed", scaleup_latency_us=10.0, comm_eff=0.7,
                      comm_custom_us=0.0),
        ),
        Device(
            name="RTX-4090", kind="gpu",
            tflops={"fp32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3, "int8": 660.6},
            mem_gb=24.0, mem_bw_gbs=1008.0, scaleup_bw_gbs=32.0, idle_w=20.0, peak_w=450.0,
            host_bw_gbs=32.0, mem_visible_gb=25.4,
            source="NVIDIA Ada Lovelace architecture white paper (GeForce RTX 4090: dense tensor rates with "
            "FP32 accumulate, GDDR6X 24GB, no NVLink: PCIe Gen4 x16 is the scale-up link)",
            **_borrow(_A100_FIT, "A100-80GB fit assumed", scaleup_latency_us=10.0, comm_eff=0.7,
                      comm_custom_us=0.0),
        ),
        Device(
            name="MI300X", kind="gpu",
            tflops={"fp32": 163.4, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9, "int8": 2614.9},
            mem_gb=192.0, mem_bw_gbs=5300.0, scaleup_bw_gbs=448.0, idle_w=140.0, peak_w=750.0,
            host_bw_gbs=64.0, mem_visible_gb=205.8,
            source="AMD Instinct MI300X datasheet (7 Infinity Fabric links, 896 GB/s aggregate bidir)",
            **_borrow(_H100_FIT, "H100-SXM overheads; GEMM efficiency lowered for ROCm", compute_eff=0.55,
                      mem_eff=0.75),
        ),
        Device(
            name="TPU-v5e", kind="tpu",
            tflops={"bf16": 197.0, "int8": 394.0},
            mem_gb=16.0, mem_bw_gbs=819.0, scaleup_bw_gbs=100.0, idle_w=50.0, peak_w=220.0,
            host_bw_gbs=32.0, mem_visible_gb=17.2,
            source="Google Cloud TPU v5e system architecture page (ICI 1,600 Gbps per chip, taken as "
            "aggregate bidirectional); power is an estimate (not published)",
            **_borrow(_H100_FIT, "H100-SXM fit assumed", compute_eff=0.7, mem_eff=0.8, comm_custom_us=0.0),
        ),
        Device(
            name="Gaudi3", kind="asic",
            tflops={"bf16": 1835.0, "fp16": 1835.0, "fp8": 1835.0},
            mem_gb=128.0, mem_bw_gbs=3700.0, scaleup_bw_gbs=525.0, idle_w=150.0, peak_w=900.0,
            host_bw_gbs=64.0,
            source="Intel Gaudi 3 AI accelerator white paper (HL-325L OAM; 21 of 24 200GbE ports for "
            "scale-up = 525 GB/s per direction)",
            **_borrow(_H100_FIT, "H100-SXM overheads; GEMM efficiency lowered", compute_eff=0.6, mem_eff=0.8,
                      comm_custom_us=0.0),
        ),
    )
}

# CPUs: the numbers the HERMES/MIST simulator uses for its RAG clients (reference note 1.3):
# one socket, TFLOPS as given there for every dtype, ICN 32 GB/s; power = vendor TDP.
_CPU_EFF = {
    "compute_eff": 0.5, "mem_eff": 0.7, "gemm_ramp_tokens": 4.0, "kernel_latency_us": 20.0,
    "attn_eff": 0.4, "comm_eff": 0.6, "comm_base_us": 20.0, "comm_graph_us": 20.0, "scaleup_latency_us": 5.0,
    "calibrated": "not measured; generic CPU assumption (half of peak FLOPS, 70% of STREAM)",
}
for _name, _tf, _bw, _mem, _w, _src in (
    ("Sapphire-Rapids", 6.27, 308.0, 4000.0, 350.0, "Intel Xeon Platinum 8480+ (8ch DDR5-4800), TDP 350 W"),
    ("Genoa", 11.37, 460.8, 6000.0, 360.0, "AMD EPYC 9654 (12ch DDR5-4800), TDP 360 W"),
    ("Grace", 14.2, 768.0, 960.0, 500.0, "NVIDIA Grace CPU Superchip (LPDDR5X), module power 500 W"),
):
    HARDWARE[_name] = Device(
        name=_name, kind="cpu", tflops={"fp32": _tf, "bf16": _tf, "fp16": _tf},
        mem_gb=_mem, mem_bw_gbs=_bw, scaleup_bw_gbs=32.0, idle_w=round(_w * 0.3, 1), peak_w=_w,
        host_bw_gbs=32.0, source=f"HERMES/MIST CPU preset (reference note 1.3); {_src}", **_CPU_EFF,
    )


def _not_number(v: Any) -> bool:
    return isinstance(v, bool) or not isinstance(v, (int, float))


_P = TypeVar("_P")


def replace_fields(preset: _P, overrides: Mapping[str, Any] | None, where: str) -> _P:
    """Copy a frozen dataclass preset with some fields replaced, type-checked field by field.

    Shared by the hardware and model catalogues so both reject bad overrides the same way:
    unknown field, wrong type, or a negative number raises SpecError naming ``where.<key>``.
    """
    if not overrides:
        return preset
    if not isinstance(overrides, Mapping):
        raise SpecError(where, f"overrides must be a mapping, got {type(overrides).__name__}")
    known = {f.name for f in dataclasses.fields(preset)}  # type: ignore[arg-type]
    clean: dict[str, Any] = {}
    for key, value in overrides.items():
        path = f"{where}.{key}"
        if key not in known:
            raise SpecError(path, f"unknown field; known: {', '.join(sorted(known))}")
        current = getattr(preset, key)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise SpecError(path, f"must be a bool, got {value!r}")
        elif isinstance(current, (int, float)):
            if _not_number(value):
                raise SpecError(path, f"must be a number, got {value!r}")
            if isinstance(current, int) and not isinstance(value, int):
                if float(value) != int(value):
                    raise SpecError(path, f"must be an integer, got {value!r}")
                value = int(value)
            if value < 0:
                raise SpecError(path, f"must not be negative, got {value!r}")
            if isinstance(current, float):
                value = float(value)
        elif isinstance(current, str):
            if not isinstance(value, str):
                raise SpecError(path, f"must be a string, got {value!r}")
        elif isinstance(current, dict):
            if not isinstance(value, Mapping):
                raise SpecError(path, f"must be a mapping, got {value!r}")
            for k, v in value.items():
                if _not_number(v) or v < 0:
                    raise SpecError(f"{path}.{k}", f"must be a non-negative number, got {v!r}")
            value = {str(k): float(v) for k, v in value.items()}
        clean[key] = value
    return dataclasses.replace(preset, **clean)  # type: ignore[type-var]


_HW_ALIASES = hardware_aliases({name: d.mem_gb for name, d in HARDWARE.items()})


def lookup_preset(catalogue: Mapping[str, _P], name: str, what: str, where: str,
                  aliases: Callable[[str], str | None] = lambda _: None, hint: str = "") -> _P:
    """Find ``name`` in a catalogue, ignoring case, else by ``aliases`` (the spellings people use,
    sim_engine/preset_names.py); SpecError listing the known names otherwise."""
    if not isinstance(name, str):
        raise SpecError(where, f"must be a {what} name (string), got {name!r}")
    if name in catalogue:
        return catalogue[name]
    folded = {k.casefold(): v for k, v in catalogue.items()}
    found = folded.get(name.casefold())
    if found is None:
        alias = aliases(name[:200])  # a name is a few words: a longer one is not looked at
        found = catalogue.get(alias) if alias else None
    if found is None:
        raise SpecError(where, f"unknown {what} {name[:200]!r}{hint}; known: {', '.join(catalogue)}")
    return found


def get_hardware(name: str, overrides: Mapping[str, Any] | None = None, field: str = "hardware") -> Device:
    """The preset ``name`` (case-insensitive) with ``overrides`` applied and validated."""
    if overrides and isinstance(overrides, Mapping) and "mem_gb" in overrides and "mem_visible_gb" not in overrides:
        overrides = {**overrides, "mem_visible_gb": 0.0}  # a capacity given by the user is what the engine sees
    device = replace_fields(lookup_preset(HARDWARE, name, "hardware", field, _HW_ALIASES), overrides, field)
    device.validate(field)
    return device
