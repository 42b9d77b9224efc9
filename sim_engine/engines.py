"""Serving-engine profiles: what a client's software does, apart from its hardware.

A profile is a named preset (``vllm``, ``vllm-v0``, ``sglang``, ``trtllm``, ``legacy-2023``) that a
client names with ``engine: NAME`` or overrides field by field with ``engine: {preset: NAME, ...}``.
It sets

* the scheduler's defaults: batching mode, token and sequence budgets, block size, memory fraction
  and the admission policy (``greedy`` admits while KV blocks are free and preempts by recompute;
  ``reserve`` holds a request's whole prompt + output KV from admission, never evicting);
* how the engine sizes its KV pool (``kv_method``): ``profile`` is vLLM's profiling run,
  ``utilisation x memory - weights - peak activations of a forward of profile_tokens tokens -
  runtime_reserve_gb`` (CUDA graphs, NCCL buffers, allocator slack); ``static_fraction`` is SGLang's
  ``mem_fraction_static`` share of memory for weights + KV pool, activations living in the rest
  (``profile_max_num_token``: available after load - total x (1 - mem_fraction_static)); ``free_fraction`` is
  TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction`` of what is left after weights and the runtime;
  ``legacy`` is the 2023 estimate on the nominal (decimal, datasheet) capacity;
* how many decode steps run per scheduling decision (``num_scheduler_steps``, vLLM 0.6's
  ``--num-scheduler-steps``, default 1): with n > 1 a decode-only batch runs n steps back to back;
  requests that arrive wait for the group to end, tokens reach the client once per group (in bursts
  of n), a sequence that finishes inside a group is computed to its end, and only the group's first
  step pays ``step_cpu_us`` (scheduling and input preparation are amortised; per-sequence and
  per-token host work is not). Steps that prefill are single steps;
* whether freed KV blocks stay cached for reuse (``prefix_caching``: vLLM V1's automatic prefix
  caching and SGLang's radix cache are on by default; vLLM 0.5-0.6 and TensorRT-LLM reuse nothing
  by default). See ``sim_engine/prefix_cache.py``;
* the engine's own time. Per step the host does ``step_cpu_us`` (+ ``layer_cpu_us`` per layer,
  ``seq_cpu_us`` per sequence, ``token_cpu_us`` per token): scheduling, input preparation,
  sampling, detokenisation. A fraction ``cpu_overlap`` of it runs while the GPU executes
  (CUDA graphs, asynchronous scheduling, overlapped output processing), so a step takes
  ``max(gpu, overlap x cpu) + (1 - overlap) x cpu`` rather than ``gpu + cpu``. ``frontend_us`` is
  the per-request API-server and tokenisation time before the request reaches the scheduler
  (visible in TTFT at low load, hidden from throughput: it runs in another process).
  ``sync_us`` is the rank skew of each tensor-parallel collective, times log2(tp);
* how it runs a tensor-parallel all-reduce (``allreduce``), which picks the collective's fixed cost
  from the hardware (``sim_engine/hardware.py``; its bandwidth and per-hop terms apply to all three):
  ``custom`` is the one-shot/two-shot peer-to-peer kernel today's engines use for small messages
  (vLLM custom_all_reduce, on by default for TP 2/4/6/8 on fully NVLink-connected GPUs up to 8 MB;
  SGLang the same kernel; TensorRT-LLM's AllReduce ONESHOT/TWOSHOT under AUTO), ``comm_custom_us``;
  where the part has none (PCIe parts, TPU, Gaudi: ``comm_custom_us`` 0), another TP or a larger
  message, it falls back to ``nccl-graph``: NCCL replayed from a CUDA graph, no host launch,
  ``comm_graph_us``; ``nccl-host`` is NCCL launched from the host each call, ``comm_base_us`` (the
  fit on Vidur's torch.distributed timings; the 2023 stack).

Sources, per profile (numbers in ``PROFILES``). Host-time numbers are set by hand from the
engines' published descriptions below, at the scale the vLLM v0.6 blog measured (host work ~60%
of a small-model step before overlap), except where a profile says it was fitted
(``benchmarks/fidelity.py --fit ENGINE``: step_cpu_us, cpu_overlap, frontend_us minimising the
mean |log error| over all usable rows of that engine in ``serving_engines.csv``, never one row).
Errors per profile: docs/FIDELITY.md.

* ``vllm`` (V1 engine, 0.8-0.10+): defaults from the vLLM engine-arguments docs (chunked prefill
  always on, block 16, gpu_memory_utilization 0.9); max_num_seqs and max_num_batched_tokens follow
  the GPU as ``EngineArgs.get_batch_defaults`` sets them for the API server (``device_defaults``):
  1024 and 8192 on parts with >= 70 GiB that are not A100s (H100, H200, B200, MI300X), else 256
  and 2048. V1 runs the scheduler in a
  busy loop beside the GPU (engine core process, separate API-server process, persistent batch,
  piecewise CUDA graphs): most host time overlaps. Automatic prefix caching is on (its default).
* ``vllm-v0`` (0.5-0.6): the v0.6.0 blog's profile of the pre-0.6 engine (API server 33%,
  scheduling + input preparation 29%, GPU 38% of a Llama-3-8B H100 step); v0.6 overlaps output
  processing with the next step. Without chunked prefill (its default up to a 32K max_model_len, and
  required by 0.6.0's multi-step scheduling) v0's scheduler (``_schedule_default``) runs waiting
  prompts first in prefill-only steps and resumes the running decodes after them: ``continuous``,
  max_num_batched_tokens = max_model_len. Above a 32K ``max_model_len`` (``chunked_above_len``;
  Llama-3.1's 128K context among them) it turns chunked prefill on, as vLLM does since 0.5.3 (PR
  6666), with 0.6's 2048-token budget (0.5 used 512), unless multi-step scheduling is on (0.6.0 ran
  multi-step without chunked prefill). ``num_scheduler_steps: 10`` is the multi-step setting of the
  v0.6 blog's and SGLang's benchmarks.
* ``sglang`` (0.3): the SGLang v0.3 release notes and benchmark README (radix cache off in the
  compared runs), chunked_prefill_size 8192, mem_fraction_static ~0.88, page size 1 (block 1
  token); the radix cache (``prefix_caching``) is on, SGLang's default. Its host time is fitted
  (refitted after the all-reduce change): the fit finds little overlap (0.16), consistent with
  v0.3, whose overlapping ("zero-overhead") scheduler became the default only in v0.4.
* ``trtllm`` (TensorRT-LLM 0.10+ and NIM): in-flight batching, ``kv_cache_free_gpu_mem_fraction``
  0.9, tokens_per_block 64 (32 before 0.12; 64 used), GUARANTEED_NO_EVICT capacity scheduler
  (= ``reserve``), C++ executor with CUDA graphs (little host time per step).
* ``trtllm-py``: TensorRT-LLM's Python ``GenerationSession`` runtime, which NeMo Framework's TRT-LLM
  export drives (its Llama-2 inference performance page): static batches and a Python loop per
  generation step, so ~2 ms of mostly serial host time per step that the C++ executor (``trtllm``,
  MLPerf) does not have; same all-reduce kernel (the TP1 -> TP8 step deltas of those rows match it).
* ``legacy-2023``: the constants fitted to the 2023 Splitwise step latencies (vLLM-v0-like stack)
  that earlier HERMES releases put on the hardware presets; reproduces those releases' numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .fields import Fields
from .limits import MAX_SCHEDULER_STEPS, MAX_TOKENS

BATCHING = ("static", "continuous", "chunked", "mixed", "external")
CHUNKING = ("chunked", "external")  # policies that may split a prompt over several steps
ADMISSION = ("greedy", "reserve")
KV_METHODS = ("profile", "static_fraction", "free_fraction", "legacy")
ALLREDUCE = ("custom", "nccl-graph", "nccl-host")


@dataclass(frozen=True)
class EngineProfile:
    """One serving engine (and version) as the simulator sees it."""

    name: str
    source: str
    batching: str = "chunked"
    max_num_batched_tokens: int = 0  # 0: 2048 for chunked, max_model_len otherwise (the 2023 default)
    max_num_seqs: int = 256
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    admission: str = "greedy"
    kv_method: str = "profile"
    profile_tokens: int = 8192  # tokens of the memory-profiling forward (activation peak)
    runtime_reserve_gb: float = 1.0  # CUDA graphs, NCCL buffers, allocator slack, per device
    step_cpu_us: float = 0.0  # host time per step (and pipeline stage)
    layer_cpu_us: float = 0.0  # host time per layer per step (kernel-launch-bound stacks)
    seq_cpu_us: float = 0.0  # host time per sequence of the step
    token_cpu_us: float = 0.0  # host time per token of the step
    cpu_overlap: float = 0.0  # share of the host time that runs while the GPU executes
    frontend_us: float = 0.0  # per-request API server + tokenisation before scheduling
    sync_us: float = 0.0  # per TP collective and log2(tp): rank skew of host-launched collectives
    allreduce: str = "custom"  # TP all-reduce kernel: custom | nccl-graph | nccl-host (see ALLREDUCE)
    prefix_caching: bool = False  # freed KV blocks stay reusable until evicted (vLLM V1 APC, SGLang radix)
    num_scheduler_steps: int = 1  # decode steps per scheduling decision (vLLM 0.6 multi-step scheduling)
    chunked_above_len: int = 0  # max_model_len above which batching defaults to chunked (0: never)
    # a client's ``dtype: fp8`` (or int8) caches KV in that format too: TensorRT-LLM runs ModelOpt
    # checkpoints with the FP8 KV cache they enable; vLLM and SGLang keep kv_cache_dtype "auto" (the
    # 16-bit model dtype) unless --kv-cache-dtype fp8 is given (vLLM docs: Quantized KV Cache)
    quantised_kv: bool = True

    per_device_host: bool = False  # legacy-2023: host constants follow the 2023 fit of the device
    device_defaults: tuple[str, ...] = ()  # batch fields whose default depends on the GPU (vLLM V1)

    def host(self, device_name: str) -> EngineProfile:
        """This profile with its host time for ``device_name`` (only legacy-2023 varies by device)."""
        if not self.per_device_host:
            return self
        return dataclasses.replace(self, per_device_host=False, **legacy_host(device_name))

    def for_device(self, device: Any) -> EngineProfile:
        """This profile on ``device`` (a hardware.Device): its host time and its batch defaults."""
        p = self.host(device.name)
        if not p.device_defaults:
            return p
        defaults = vllm_batch_defaults(device.name, device.mem_bytes)
        return dataclasses.replace(p, device_defaults=(), **{k: defaults[k] for k in p.device_defaults})


_HOST_FIELDS = ("step_cpu_us", "layer_cpu_us", "seq_cpu_us", "token_cpu_us", "sync_us")

# The 2023 fits (PYTHONPATH=. python benchmarks/calibration.py --fit, on the Splitwise DGX-A100 /
# DGX-H100 llama2-70b steps), formerly fields of the hardware presets.
_LEGACY_A100 = {"step_cpu_us": 2000.0, "layer_cpu_us": 0.0, "seq_cpu_us": 291.0, "token_cpu_us": 12.8,
                "sync_us": 35.5}
_LEGACY_H100 = {"step_cpu_us": 2000.0, "layer_cpu_us": 0.0, "seq_cpu_us": 262.0, "token_cpu_us": 19.3,
                "sync_us": 25.4}
_LEGACY_CPU = {"step_cpu_us": 200.0, "layer_cpu_us": 0.0, "seq_cpu_us": 20.0, "token_cpu_us": 0.0,
               "sync_us": 0.0}
_LEGACY_BY_DEVICE = {"A100-40GB": _LEGACY_A100, "A100-80GB": _LEGACY_A100, "L40S": _LEGACY_A100,
                     "Sapphire-Rapids": _LEGACY_CPU, "Genoa": _LEGACY_CPU, "Grace": _LEGACY_CPU}


_GIB = 1 << 30


def vllm_batch_defaults(device_name: str, mem_bytes: float) -> dict[str, int]:
    """vLLM V1's API-server batch defaults for a GPU (``EngineArgs.get_batch_defaults``, 0.9-0.10).

    Parts with at least 70 GiB that are not A100s ("setting large max_num_batched_tokens for A100
    reduces throughput", vLLM PR 17885) get 1024 sequences and 8192 tokens; every other GPU 256 and 2048.
    """
    big = mem_bytes >= 70 * _GIB and "a100" not in device_name.lower()
    return {"max_num_seqs": 1024 if big else 256, "max_num_batched_tokens": 8192 if big else 2048}


def legacy_host(device_name: str) -> dict[str, float]:
    """The 2023 host constants a hardware preset carried (H100 fit for every other part)."""
    return dict(_LEGACY_BY_DEVICE.get(device_name, _LEGACY_H100))


PROFILES: dict[str, EngineProfile] = {
    p.name: p
    for p in (
        EngineProfile(
            name="legacy-2023",
            source="HERMES <= 2026-11 constants: Splitwise DGX-A100/H100 step fit (host time serial)",
            kv_method="legacy", allreduce="nccl-host", per_device_host=True, **_LEGACY_H100,
        ),
        EngineProfile(
            name="vllm",
            source="vLLM V1 (0.8-0.10) engine-args defaults; host time set by hand (module docstring), "
            "checked by benchmarks/fidelity.py",
            batching="chunked", max_num_batched_tokens=8192, max_num_seqs=256, block_size=16,
            gpu_memory_utilization=0.9, admission="greedy", kv_method="profile", profile_tokens=8192,
            runtime_reserve_gb=0.5,
            step_cpu_us=1500.0, seq_cpu_us=25.0, token_cpu_us=0.5, cpu_overlap=0.8, frontend_us=4000.0,
            sync_us=5.0, prefix_caching=True, quantised_kv=False,
            device_defaults=("max_num_seqs", "max_num_batched_tokens"),
        ),
        EngineProfile(
            name="vllm-v0",
            source="vLLM 0.5-0.6 (v0 engine) defaults; v0.6.0 blog CPU breakdown; host time set by hand, "
            "checked by benchmarks/fidelity.py",
            batching="continuous", max_num_batched_tokens=0, max_num_seqs=256, block_size=16,
            gpu_memory_utilization=0.9, admission="greedy", kv_method="profile", profile_tokens=8192,
            runtime_reserve_gb=1.0,
            step_cpu_us=2500.0, seq_cpu_us=60.0, token_cpu_us=1.0, cpu_overlap=0.5, frontend_us=10000.0,
            sync_us=10.0, quantised_kv=False, chunked_above_len=32768,
        ),
        EngineProfile(
            name="sglang",
            source="SGLang 0.3-0.4 defaults (chunked_prefill_size 8192, mem_fraction_static 0.88, "
            "page size 1); step_cpu_us, cpu_overlap, frontend_us fitted on the 20 usable SGLang rows "
            "(benchmarks/fidelity.py --fit sglang, with the custom all-reduce)",
            batching="chunked", max_num_batched_tokens=8192, max_num_seqs=1024, block_size=1,
            gpu_memory_utilization=0.88, admission="greedy", kv_method="static_fraction", profile_tokens=8192,
            runtime_reserve_gb=1.0,
            step_cpu_us=3330.0, seq_cpu_us=15.0, token_cpu_us=0.5, cpu_overlap=0.16, frontend_us=5800.0,
            sync_us=5.0, prefix_caching=True, quantised_kv=False,
        ),
        EngineProfile(
            name="trtllm",
            source="TensorRT-LLM executor defaults (in-flight batching, kv_cache_free_gpu_mem_fraction "
            "0.9, tokens_per_block 64, GUARANTEED_NO_EVICT); host time set by hand, checked by "
            "benchmarks/fidelity.py",
            batching="chunked", max_num_batched_tokens=8192, max_num_seqs=256, block_size=64,
            gpu_memory_utilization=0.9, admission="reserve", kv_method="free_fraction", profile_tokens=8192,
            runtime_reserve_gb=1.0,
            step_cpu_us=500.0, seq_cpu_us=5.0, token_cpu_us=0.2, cpu_overlap=0.5, frontend_us=2000.0,
            sync_us=5.0,
        ),
        EngineProfile(
            name="trtllm-py",
            source="TensorRT-LLM Python GenerationSession runtime as NeMo Framework's TRT-LLM export runs it "
            "(nemo/export/trt_llm/tensorrt_llm_run.py, 2023-24): static batches, a Python loop per step; "
            "step_cpu_us, cpu_overlap fitted on the NeMo A100 rows, validated on its H100 rows "
            "(benchmarks/fidelity.py --fit trtllm-py --fit-source nemo-trtllm --train-hw A100-80GB)",
            batching="static", max_num_batched_tokens=8192, max_num_seqs=256, block_size=64,
            gpu_memory_utilization=0.9, admission="reserve", kv_method="free_fraction", profile_tokens=8192,
            runtime_reserve_gb=1.0,
            step_cpu_us=2500.0, seq_cpu_us=5.0, token_cpu_us=0.2, cpu_overlap=0.23, frontend_us=2000.0,
            sync_us=5.0,
        ),
    )
}
DEFAULT_ENGINE = "vllm"
# other names users give these engines: NVIDIA NIM for LLMs serves through TensorRT-LLM's executor
ALIASES = {"nim": "trtllm", "tensorrt-llm": "trtllm", "trt-llm": "trtllm"}


def _lookup(name: Any, where: str) -> EngineProfile:
    if not isinstance(name, str):
        raise SpecError(where, f"must be an engine name (string), got {name!r}")
    name = ALIASES.get(name.casefold(), name)
    for key, p in PROFILES.items():
        if key.casefold() == name.casefold():
            return p
    raise SpecError(where, f"unknown engine {name!r}; known: {', '.join(PROFILES)} "
                           f"(and {', '.join(ALIASES)} for trtllm)")


def get_engine(value: Any = DEFAULT_ENGINE, where: str = "engine") -> EngineProfile:
    """A profile by name, or ``{preset: NAME, <field>: <value>, ...}`` with each override range-checked."""
    if isinstance(value, str):
        return _lookup(value, where)
    f = Fields(value, where)
    name = f.str("preset", DEFAULT_ENGINE)
    base = _lookup(name, f"{where}.preset")
    clean: dict[str, Any] = {
        "batching": f.str("batching", base.batching, BATCHING),
        "max_num_batched_tokens": f.int("max_num_batched_tokens", base.max_num_batched_tokens, minimum=0),
        "max_num_seqs": f.int("max_num_seqs", base.max_num_seqs),
        "block_size": f.int("block_size", base.block_size, maximum=1 << 16),
        "gpu_memory_utilization": f.float("gpu_memory_utilization", base.gpu_memory_utilization,
                                          positive=True, maximum=1.0),
        "admission": f.str("admission", base.admission, ADMISSION),
        "kv_method": f.str("kv_method", base.kv_method, KV_METHODS),
        "allreduce": f.str("allreduce", base.allreduce, ALLREDUCE),
        "profile_tokens": f.int("profile_tokens", base.profile_tokens, minimum=0, maximum=1 << 24),
        "runtime_reserve_gb": f.float("runtime_reserve_gb", base.runtime_reserve_gb, maximum=1e4),
        "cpu_overlap": f.float("cpu_overlap", base.cpu_overlap, maximum=1.0),
        "prefix_caching": f.bool("prefix_caching", base.prefix_caching),
        "num_scheduler_steps": f.int("num_scheduler_steps", base.num_scheduler_steps, maximum=MAX_SCHEDULER_STEPS),
        "chunked_above_len": f.int("chunked_above_len", base.chunked_above_len, minimum=0, maximum=MAX_TOKENS),
        "quantised_kv": f.bool("quantised_kv", base.quantised_kv),
    }
    for key in ("step_cpu_us", "layer_cpu_us", "seq_cpu_us", "token_cpu_us", "frontend_us", "sync_us"):
        clean[key] = f.float(key, getattr(base, key), maximum=1e8)
    f.raw("source")
    f.done()
    changed = {k: v for k, v in clean.items() if v != getattr(base, k)}
    kept = tuple(k for k in base.device_defaults if f.doc.get(k) is None)
    if kept != base.device_defaults:  # a batch field given here is no longer the GPU's default
        changed["device_defaults"] = kept
    if not changed:
        return base
    if base.per_device_host and set(changed) & set(_HOST_FIELDS):
        changed["per_device_host"] = False  # explicit host time: the H100 fit for fields not given
    return dataclasses.replace(base, source=f"{base.source}; overridden: {', '.join(sorted(changed))}", **changed)


def engine_names() -> tuple[str, ...]:
    return tuple(PROFILES)


def as_profile(value: EngineProfile | Mapping[str, Any] | str | None) -> EngineProfile:
    """Accept a profile, a name or an override mapping (None: legacy-2023, the library default)."""
    if value is None:
        return PROFILES["legacy-2023"]
    if isinstance(value, EngineProfile):
        return value
    return get_engine(value if isinstance(value, str) else dict(value))


__all__ = ["ADMISSION", "ALLREDUCE", "CHUNKING", "DEFAULT_ENGINE", "PROFILES", "EngineProfile", "as_profile", "engine_names",
           "get_engine", "legacy_host"]
