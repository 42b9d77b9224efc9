"""Analytical (roofline) performance model of one LLM client.

Every operator of a step costs ``max(compute, memory) + kernel latency`` on one device of the
client, where compute = FLOPs / (peak * efficiency) and memory = bytes / (bandwidth * mem_eff);
operators run back to back (no overlap), as in GenZ. Differences from GenZ that matter:

* causal prefill attention counts only the pairs a chunk really computes, ``l * past + l(l+1)/2``;
* GEMM efficiency ramps with the token count, ``compute_eff * M / (M + gemm_ramp_tokens)``, and
  every kernel pays ``kernel_latency_us`` (fitted on the Vidur operator profiles);
* MoE layers read the weights of the experts a batch actually touches, ``E (1 - (1 - k/E)^T)``;
* host (CPU) time per step comes from the client's serving-engine profile (sim_engine/engines.py):
  cpu = step_cpu_us per pipeline stage + layer_cpu_us per layer + seq_cpu_us per sequence +
  token_cpu_us per token, of which a share ``cpu_overlap`` runs under the GPU's work, so
  ``step = gpu + (1 - overlap) cpu + max(0, overlap cpu - gpu)`` (= max(gpu, overlap cpu) +
  serial cpu). The ``legacy-2023`` profile (overlap 0) is the serial sum fitted on the Splitwise
  step latencies.

Tensor parallelism shards heads and FFN columns by ``tp`` and adds two all-reduces per layer
(plus one after the vocab-parallel embedding) on the device's scale-up link:
``base + 2(tp-1) * latency + sync * log2(tp) + 2(tp-1)/tp * bytes / (bw * comm_eff)``, where
``sync`` (the engine's ``sync_us``) is the rank skew of host-launched collectives (zero in a pure
NCCL benchmark) and ``base`` the fixed cost of the engine's all-reduce kernel (engine ``allreduce``):
``comm_custom_us`` for the one-shot custom kernel (TP 2/4/6/8, messages up to 8 MiB, parts that have
it), else ``comm_graph_us`` for NCCL in a CUDA graph, or ``comm_base_us`` for NCCL launched from the
host (legacy-2023). A parallel attention/MLP block (GPT-J) reduces once per layer. Pipeline parallelism
splits the layers over ``pp`` stages; a step is one micro-batch passing every stage in turn, so
its time is the sum over stages (all layers) plus ``pp - 1`` activation sends. Pipelined
micro-batches overlapping across stages are not modelled.

Energy of a step: ``n_devices * idle_w * t + tp * (peak_w - idle_w) * min(active, t)``, where
``active`` is the roofline busy time (sum over operators of max(compute, memory), plus
collectives) of one stage's devices summed over stages. It is the stated formula
``n_devices * (idle_w + (peak_w - idle_w) * u) * t`` with utilisation ``u = min(active, t) / (pp t)``:
a device draws peak power while its kernels stream at the roofline and idle power otherwise.

The step cost of everything but attention depends only on (tokens, LM-head rows, sequences) and is
memoised exactly; decode attention is linear in the context sum inside one ``max``, so
``decode_steps`` evaluates the very same expressions on a numpy vector and matches ``step`` bit
for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sim_engine.engines import EngineProfile, as_profile
from sim_engine.errors import SpecError
from sim_engine.hardware import Device
from sim_engine.models import ModelArch
from sim_engine.perf.base import StepCost

# (time, compute, memory, active) of a group of operators, seconds
Cost = tuple[float, float, float, float]
_ZERO: Cost = (0.0, 0.0, 0.0, 0.0)
_VLLM_PROFILE_TOKENS = 8192  # vLLM profiles activation memory with a forward of this many tokens
_VLLM_PROFILE_SEQS = 256  # and samples this many sequences (fp32 logits)
_NON_TORCH_BYTES = 1.0e9  # CUDA context, NCCL buffers, CUDA graphs
# vLLM custom_all_reduce: world sizes it supports and its default buffer (max_size 8 MiB); SGLang
# and TensorRT-LLM AUTO switch to NCCL at similar sizes
_CUSTOM_AR_TP = (2, 4, 6, 8)
_CUSTOM_AR_MAX_BYTES = 8 * 1024 * 1024


def check_parallelism(model: ModelArch, tp: int, pp: int) -> None:
    """Reject degrees vLLM would reject: tp must split the heads, pp at most one layer per stage."""
    for name, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpecError(name, f"must be a positive integer, got {v!r}")
    if model.n_heads % tp:
        raise SpecError("tp", f"tp={tp} does not divide the {model.n_heads} attention heads of {model.name}")
    kv = model.n_kv_heads
    if not model.is_mla and kv % tp and tp % kv:
        raise SpecError("tp", f"tp={tp} neither divides nor is a multiple of the {kv} KV heads of {model.name}")
    if pp > model.n_layers:
        raise SpecError("pp", f"pp={pp} exceeds the {model.n_layers} layers of {model.name}")


def _stage_layers(n_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage, earlier stages taking the remainder (as vLLM does)."""
    base, extra = divmod(n_layers, pp)
    return [base + (1 if i < extra else 0) for i in range(pp)]


class _Shard:
    """Per-device shapes of one model under a tensor-parallel degree."""

    def __init__(self, m: ModelArch, tp: int) -> None:
        self.heads = m.n_heads // tp
        self.kv_heads = max(1, m.n_kv_heads // tp)  # replicated when tp exceeds the KV heads
        rep, sharded = m.attn_in_params()
        self.attn_in = rep + sharded / tp
        self.attn_in_out_w = (self.heads + 2 * self.kv_heads) * m.head_dim
        self.attn_out = m.attn_out_params() / tp
        self.attn_out_in_w = self.heads * m.v_dim
        self.ffn = m.ffn_dim / tp
        self.moe_ffn = m.moe_ffn_dim / tp
        self.kv_elems = m.kv_elems_per_token_layer() if m.is_mla else 2 * self.kv_heads * m.head_dim
        self.vocab = m.vocab / tp

    def layer_weight_params(self, m: ModelArch, moe: bool, tp: int) -> float:
        rep, _ = m.attn_in_params()
        n = m.layer_params(moe) / tp + rep * (1 - 1 / tp)
        if moe:
            n += m.hidden * m.n_experts * (1 - 1 / tp)  # router is replicated
        return n


def _activation_peak(model: ModelArch, sh: _Shard, tokens: int, seqs: int) -> float:
    """Peak activation bytes of a profiling forward of ``tokens`` tokens (+ fp32 logits of ``seqs``)."""
    ffn_w = max(sh.ffn, sh.moe_ffn * model.top_k) * (2 if model.gated_ffn else 1)
    peak = tokens * (ffn_w + 4 * model.hidden) * model.act_bytes
    if model.has_lm_head:
        peak += seqs * sh.vocab * 4
    return peak


def kv_capacity_tokens(device: Device, model: ModelArch, tp: int = 1, pp: int = 1,
                       gpu_memory_utilization: float = 0.9,
                       activation_reserve_frac: float | None = None,
                       engine: EngineProfile | str | None = None) -> int:
    """KV tokens one client can cache, as its serving engine sizes its block pool.

    Per device (the worst pipeline stage), by the engine's ``kv_method``:

    * ``profile`` (vLLM, SGLang): ``visible memory * utilisation - weight shard - peak activations
      of a forward of profile_tokens tokens (and fp32 logits of max_num_seqs rows) -
      runtime_reserve_gb`` (CUDA graphs, NCCL, allocator);
    * ``static_fraction`` (SGLang): ``visible memory * mem_fraction_static - weight shard -
      runtime_reserve_gb``; activations and CUDA graphs use the other ``1 - mem_fraction_static``
      (SGLang ``ModelRunner.profile_max_num_token``: rest = available after loading the weights -
      total x (1 - mem_fraction_static));
    * ``free_fraction`` (TensorRT-LLM): ``utilisation`` (kv_cache_free_gpu_mem_fraction) of what is
      free after the weights, activations and runtime reserve;
    * ``legacy`` (legacy-2023, the default without an engine): the 2023 estimate on the datasheet
      capacity (decimal GB), 8192-token activations, 256 logit rows and 1 GB of non-torch memory.

    ``activation_reserve_frac`` replaces activations + runtime reserve by that share of memory.
    The result is divided by the KV bytes one token needs on that device.
    """
    check_parallelism(model, tp, pp)
    if not 0 < gpu_memory_utilization <= 1:
        raise SpecError("gpu_memory_utilization", f"must be in (0, 1], got {gpu_memory_utilization}")
    eng = as_profile(engine).for_device(device)
    sh = _Shard(model, tp)
    legacy = eng.kv_method == "legacy"
    mem = device.mem_gb * 1e9 if legacy else device.mem_bytes
    wb = model.weight_bytes_per_param
    worst_weights, worst_layers = 0.0, 0
    start = 0
    for i, n in enumerate(_stage_layers(model.n_layers, pp)):
        dense = max(0, min(start + n, model.n_layers - model.n_moe_layers) - start)
        params = dense * sh.layer_weight_params(model, False, tp)
        params += (n - dense) * sh.layer_weight_params(model, True, tp)
        table = (model.embedding_params() if i == 0 else 0) + (model.lm_head_params() if i == pp - 1 else 0)
        worst_weights = max(worst_weights, params * wb + table / tp * model.embed_bytes)
        worst_layers = max(worst_layers, n)
        start += n
    if activation_reserve_frac is None:
        if legacy:
            reserve = _NON_TORCH_BYTES + _activation_peak(model, sh, _VLLM_PROFILE_TOKENS, _VLLM_PROFILE_SEQS)
        elif eng.kv_method == "static_fraction":
            reserve = eng.runtime_reserve_gb * 1e9
        else:
            reserve = eng.runtime_reserve_gb * 1e9 + _activation_peak(model, sh, eng.profile_tokens,
                                                                     eng.max_num_seqs)
    elif 0 <= activation_reserve_frac < 1:
        reserve = activation_reserve_frac * mem
    else:
        raise SpecError("activation_reserve_frac", f"must be in [0, 1), got {activation_reserve_frac}")
    if eng.kv_method == "free_fraction":
        free = (mem - worst_weights - reserve) * gpu_memory_utilization
    else:
        free = mem * gpu_memory_utilization - worst_weights - reserve
    if free <= 0:
        raise SpecError(
            "model",
            f"{model.name} does not fit on {tp * pp} x {device.name} (tp={tp}, pp={pp}): the weights need "
            f"{worst_weights / 1e9:.1f} GB per device, {mem * gpu_memory_utilization / 1e9:.1f} GB usable, "
            f"{reserve / 1e9:.1f} GB reserved for activations",
        )
    per_token = worst_layers * sh.kv_elems * model.kv_bytes_per_elem
    return int(free // per_token)


class AnalyticalPerfModel:
    """Roofline cost of batch steps of ``model`` on ``tp * pp`` devices of one kind."""

    def __init__(self, device: Device, model: ModelArch, tp: int = 1, pp: int = 1,
                 step_overhead_s: float | None = None, seq_overhead_s: float | None = None,
                 compute_dtype: str | None = None, engine: EngineProfile | str | None = None) -> None:
        check_parallelism(model, tp, pp)
        for name, v in (("step_overhead_s", step_overhead_s), ("seq_overhead_s", seq_overhead_s)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise SpecError(f"perf.{name}", f"must be a non-negative number of seconds, got {v!r}")
        self.device, self.model, self.tp, self.pp = device, model, tp, pp
        self.engine = eng = as_profile(engine).for_device(device)
        self.n_devices = tp * pp
        if compute_dtype is None:
            compute_dtype = "fp8" if model.weight_bytes_per_param <= 1 and "fp8" in device.tflops else "bf16"
        self.compute_dtype = compute_dtype
        d = device
        self._flops = d.peak_flops(compute_dtype)
        self._bw = d.mem_bw_gbs * 1e9 * d.mem_eff  # achievable bytes/s
        eff = d.compute_eff
        if compute_dtype in ("fp8", "int8") and d.fp8_eff and eng.kv_method != "legacy":
            eff = d.fp8_eff  # measured fp8 GEMM ceiling (legacy-2023 keeps its single efficiency)
        self._gemm_rate = self._flops * eff  # achievable FLOP/s of a large GEMM
        self._eb = model.embed_bytes  # bytes per LM-head weight: 16-bit in a quantised model
        self._head_rate = (d.peak_flops("bf16") * d.compute_eff if self._eb > model.weight_bytes_per_param
                           else self._gemm_rate)
        self._attn_rate = self._flops * d.attn_eff
        self._ramp = d.gemm_ramp_tokens
        self._klat = d.kernel_latency_us * 1e-6
        self._link = d.scaleup_bw_gbs * 1e9 * d.comm_eff
        # the scheduling part of the step overhead: multi-step scheduling pays it once per group of steps
        self._sched_overhead_s = eng.step_cpu_us * 1e-6 * pp if step_overhead_s is None else float(step_overhead_s)
        if step_overhead_s is None:
            step_overhead_s = eng.step_cpu_us * 1e-6 * pp + eng.layer_cpu_us * 1e-6 * model.n_layers
        self.step_overhead_s = float(step_overhead_s)
        self.seq_overhead_s = eng.seq_cpu_us * 1e-6 if seq_overhead_s is None else float(seq_overhead_s)
        self._token_overhead = eng.token_cpu_us * 1e-6
        self._overlap = eng.cpu_overlap  # share of host time hidden under the GPU's work
        self._serial = 1.0 - eng.cpu_overlap
        self._sync = eng.sync_us
        self._idle_j = self.n_devices * d.idle_w  # J per second of step
        self._dyn_j = tp * (d.peak_w - d.idle_w)  # J per second of active roofline time
        self._shard = sh = _Shard(model, tp)
        self._wb, self._ab = model.weight_bytes_per_param, model.act_bytes
        self._kvb = sh.kv_elems * model.kv_bytes_per_elem  # KV bytes per token per layer per device
        self._n_dense = model.n_layers - model.n_moe_layers
        # attention constants (per layer, one device)
        dqk, dv = model.attn_dims(decode=False)
        self._pf_flops_per_pair = 2.0 * sh.heads * (dqk + dv)
        self._pf_q_bytes = sh.heads * (dqk + dv) * self._ab + self._kvb  # read q, write o and new kv
        dqk, dv = model.attn_dims(decode=True)
        self._dec_c = 2.0 * sh.heads * (dqk + dv) / self._attn_rate  # s per attended key
        self._dec_m = self._kvb / self._bw  # s per attended key
        self._dec_mq = (sh.heads * (dqk + dv) * self._ab + self._kvb) / self._bw  # s per decoding sequence
        self._layers = float(model.n_layers)
        self._tok_memo: dict[int, Cost] = {}
        self._head_memo: dict[int, Cost] = {}
        self._fixed_memo: dict[tuple[int, int, int], tuple[float, float, float, float, float]] = {}
        self._cont_memo: dict[tuple[int, int, int], tuple[float, float, float, float, float]] = {}

    # ---- operator costs ------------------------------------------------------------------
    def gemm(self, tokens: float, params: float, in_w: float, out_w: float, groups: float = 1.0,
             unquantised: bool = False) -> Cost:
        """One (grouped) GEMM kernel: ``tokens`` rows spread over ``groups`` weights of ``params`` in all.

        Each group runs ``tokens / groups`` rows at efficiency ``compute_eff * M / (M + ramp)``.
        ``unquantised``: the LM head, whose weights a quantised model keeps at 16 bits (16-bit rate).
        """
        rate, wb = (self._head_rate, self._eb) if unquantised else (self._gemm_rate, self._wb)
        compute = 2.0 * params * (tokens / groups + self._ramp) / rate
        memory = (params * wb + tokens * (in_w + out_w) * self._ab) / self._bw
        busy = max(compute, memory)
        return busy + self._klat, compute, memory, busy

    def stream(self, nbytes: float, kernels: int = 1) -> Cost:
        """Memory-bound elementwise kernels moving ``nbytes`` in total."""
        memory = nbytes / self._bw
        return memory + kernels * self._klat, 0.0, memory, memory

    def allreduce_base_us(self, nbytes: float) -> float:
        """Fixed cost of one all-reduce of ``nbytes`` with the engine's kernel on this device (us)."""
        d, kind = self.device, self.engine.allreduce
        if kind == "nccl-host":
            return d.comm_base_us
        if (kind == "custom" and d.comm_custom_us > 0 and self.tp in _CUSTOM_AR_TP
                and nbytes <= _CUSTOM_AR_MAX_BYTES):
            return d.comm_custom_us
        return d.comm_graph_us

    def allreduce_time(self, nbytes: float) -> float:
        """All-reduce of ``nbytes`` over the tp devices of a stage; 0 when tp == 1."""
        tp = self.tp
        if tp == 1:
            return 0.0
        d = self.device
        return ((self.allreduce_base_us(nbytes) + 2 * (tp - 1) * d.scaleup_latency_us
                 + self._sync * math.log2(tp)) * 1e-6
                + 2 * (tp - 1) / tp * nbytes / self._link)

    def send_time(self, nbytes: float) -> float:
        """Point-to-point activation send between pipeline stages."""
        d = self.device
        return (d.comm_base_us + d.scaleup_latency_us) * 1e-6 + nbytes / self._link

    def comm_time(self, tokens: int) -> float:
        """TP all-reduces (two per layer, one with a parallel block, one after the embedding) and PP sends."""
        nbytes = tokens * self.model.hidden * self._ab
        per_layer = 1 if self.model.parallel_block else 2
        return (per_layer * self.model.n_layers + 1) * self.allreduce_time(nbytes) + (self.pp - 1) * self.send_time(nbytes)

    def _moe_ffn(self, t: int) -> Cost:
        """Router, the routed experts the t tokens touch (grouped GEMMs), shared experts."""
        m, sh = self.model, self._shard
        e, k = m.n_experts, m.top_k
        hit = e * (1.0 - (1.0 - k / e) ** t)  # expected distinct experts touched by t tokens
        rows = t * k
        up_w = sh.moe_ffn * (2 if m.gated_ffn else 1)
        parts = [
            self.gemm(t, m.hidden * e, m.hidden, e),  # router (replicated)
            self.gemm(rows, hit * m.hidden * up_w, m.hidden, up_w, hit),
            self.stream(rows * (up_w + sh.moe_ffn) * self._ab),
            self.gemm(rows, hit * m.hidden * sh.moe_ffn, sh.moe_ffn, m.hidden, hit),
        ]
        if m.n_shared_experts:
            parts.extend(self._dense_ffn(t, m.n_shared_experts * sh.moe_ffn))
        return _sum(parts)

    def _dense_ffn(self, t: int, inner: float) -> list[Cost]:
        m, d = self.model, self.model.hidden
        up_w = inner * (2 if m.gated_ffn else 1)
        return [self.gemm(t, d * up_w, d, up_w), self.stream(t * (up_w + inner) * self._ab),
                self.gemm(t, d * inner, inner, d)]

    def _token_cost(self, t: int) -> Cost:
        """Everything in a step whose cost depends only on its token count (memoised)."""
        hit = self._tok_memo.get(t)
        if hit is not None:
            return hit
        if t <= 0:
            return _ZERO
        m, sh, ab, d = self.model, self._shard, self._ab, self.model.hidden
        attn = [self.gemm(t, sh.attn_in, d, sh.attn_in_out_w), self.gemm(t, sh.attn_out, sh.attn_out_in_w, d)]
        # two fused residual-add + norm kernels (read x and residual, write both; one in a parallel
        # block) and rotary q/k (on rotary_dim of each head when the rotation is partial)
        rope = 0 if m.learned_pos_emb else 2 * (sh.heads + sh.kv_heads) * (m.rotary_dim or m.head_dim)
        norms = 1 if m.parallel_block else 2
        attn.append(self.stream(t * (4 * norms * d + rope) * ab, kernels=norms + 1))
        per_dense = _sum(attn + self._dense_ffn(t, sh.ffn))
        cost = _scale(per_dense, self._n_dense)
        if m.n_moe_layers:
            cost = _sum([cost, _scale(_sum(attn + [self._moe_ffn(t)]), m.n_moe_layers)])
        # embedding gather and final norm
        cost = _sum([cost, self.stream(t * d * ab * 2), self.stream(t * d * ab * 4)])
        self._tok_memo[t] = cost
        return cost

    def lm_head(self, rows: int) -> Cost:
        """LM head over the rows that need logits (last token of each sequence)."""
        hit = self._head_memo.get(rows)
        if hit is None:
            m = self.model
            hit = self.gemm(rows, self._shard.vocab * m.hidden, m.hidden, self._shard.vocab,
                            unquantised=True) if rows else _ZERO
            self._head_memo[rows] = hit
        return hit

    def host_overhead(self, tokens: int, seqs: int, scheduled: bool = True) -> float:
        """Host time of a step: per step (and stage), per sequence and per token. A step that is not
        ``scheduled`` (a later step of a multi-step group) skips the scheduling part."""
        step = self.step_overhead_s if scheduled else self.step_overhead_s - self._sched_overhead_s
        return step + self.seq_overhead_s * seqs + self._token_overhead * tokens

    def host_split(self, tokens: int, seqs: int, scheduled: bool = True) -> tuple[float, float]:
        """(serial, overlapped) host time of a step: the overlapped part hides under GPU work."""
        cpu = self.host_overhead(tokens, seqs, scheduled)
        if not self._overlap:
            return cpu, 0.0
        return cpu * self._serial, cpu * self._overlap

    def lm_rows(self, seqs: int) -> int:
        """Rows the LM head computes: one per sequence of the step (none for encoders)."""
        return seqs if self.model.has_lm_head else 0

    def energy(self, time: Any, active: Any, mn: Callable[[Any, Any], Any] = min) -> Any:
        """Energy of a step of ``time`` seconds whose devices were at the roofline for ``active`` s."""
        return self._idle_j * time + self._dyn_j * mn(active, time)

    def _fixed(self, tokens: int, rows: int, seqs: int,
               scheduled: bool = True) -> tuple[float, float, float, float, float, float, float]:
        """(time, compute, memory, comm, active, gpu, overlapped cpu) of a step minus its attention kernels.

        ``time`` = GPU time + serial host time; ``gpu`` is the GPU part alone.
        """
        memo = self._fixed_memo if scheduled else self._cont_memo
        key = (tokens, rows, seqs)
        hit = memo.get(key)
        if hit is None:
            tok, head = self._token_cost(tokens), self.lm_head(rows)
            comm = self.comm_time(tokens)
            serial, hidden = self.host_split(tokens, seqs, scheduled)
            gpu = tok[0] + head[0] + comm
            hit = (gpu + serial, tok[1] + head[1], tok[2] + head[2], comm, tok[3] + head[3] + comm, gpu, hidden)
            memo[key] = hit
        return hit

    @staticmethod
    def _exposed(hidden: float, gpu: Any, mx: Callable[[Any, Any], Any] = max) -> Any:
        """Overlapped host time the GPU work does not cover (0 when the GPU is the longer)."""
        return mx(hidden - gpu, 0.0)

    # ---- attention ------------------------------------------------------------------------
    def prefill_attention(self, prefills: Sequence[tuple[int, int]]) -> Cost:
        """One varlen flash-attention kernel per layer over all prefill chunks, times the layers."""
        pairs = 0
        kv_tokens = 0
        q_tokens = 0
        causal = self.model.causal
        for past, new in prefills:
            pairs += new * past + (new * (new + 1) // 2 if causal else new * new)
            kv_tokens += past + new
            q_tokens += new
        if not q_tokens:
            return _ZERO
        compute = pairs * self._pf_flops_per_pair / self._attn_rate
        memory = (kv_tokens * self._kvb + q_tokens * self._pf_q_bytes) / self._bw
        busy = max(compute, memory)
        n = self._layers
        return (busy + self._klat) * n, compute * n, memory * n, busy * n

    def decode_attention(self, n: int, ctx_sum: Any, mx: Callable[[Any, Any], Any] = max) -> Cost:
        """Decode attention of n sequences with ``ctx_sum`` cached keys; scalar or numpy vector
        (mx=np.maximum). ``decode_steps`` repeats these operations in place: change both together."""
        keys = ctx_sum + n  # each sequence also attends to its new token
        compute = keys * self._dec_c
        memory = keys * self._dec_m + n * self._dec_mq
        busy = mx(compute, memory)
        layers = self._layers
        return (busy + self._klat) * layers, compute * layers, memory * layers, busy * layers

    # ---- PerfModel protocol ---------------------------------------------------------------
    def step(self, prefills: Sequence[tuple[int, int]], n_decode: int, decode_ctx_sum: int) -> StepCost:
        if not prefills:
            return self._decode_step(n_decode, decode_ctx_sum)
        tokens = n_decode
        for _, new in prefills:
            tokens += new
        seqs = len(prefills) + n_decode
        f_time, f_comp, f_mem, comm, f_act, gpu, hidden = self._fixed(tokens, self.lm_rows(seqs), seqs)
        a_time, a_comp, a_mem, a_act = self.prefill_attention(prefills)
        time = f_time + a_time
        gpu += a_time
        comp, mem, act = f_comp + a_comp, f_mem + a_mem, f_act + a_act
        if n_decode:
            d = self.decode_attention(n_decode, decode_ctx_sum, max)
            time += d[0]
            gpu += d[0]
            comp, mem, act = comp + d[1], mem + d[2], act + d[3]
        if hidden:
            time += self._exposed(hidden, gpu)
        return StepCost(time, comp, mem, comm, self.energy(time, act))

    def _decode_step(self, n: int, ctx_sum: int) -> StepCost:
        if n <= 0:
            return StepCost(0.0, 0.0, 0.0, 0.0, 0.0)
        f_time, f_comp, f_mem, comm, f_act, gpu, hidden = self._fixed(n, self.lm_rows(n), n)
        a_time, a_comp, a_mem, a_act = self.decode_attention(n, ctx_sum, max)
        time = f_time + a_time
        if hidden:
            time += self._exposed(hidden, gpu + a_time)
        return StepCost(time, f_comp + a_comp, f_mem + a_mem, comm, self.energy(time, f_act + a_act))

    def decode_steps(self, n_decode: int, ctx_sums: np.ndarray, group: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``_decode_step`` of every run step at once (the closed form's hot path: it runs once per
        decode run). The same float operations as the scalar path, in the same order, so the
        results are bit-identical; only what the run needs (time, energy) is computed, in place.

        ``group`` > 1: the run is made of multi-step groups of that many steps from its first; only
        each group's first step pays the scheduling part of the host time."""
        ctx = np.asarray(ctx_sums, dtype=np.int64)
        if n_decode <= 0:
            return np.zeros(ctx.shape), np.zeros(ctx.shape)
        rows = self.lm_rows(n_decode)
        time, energy = self._decode_run(n_decode, ctx, self._fixed(n_decode, rows, n_decode))
        if group > 1 and len(ctx) > 1 and self._sched_overhead_s:
            later = np.arange(len(ctx)) % group != 0
            c_time, c_energy = self._decode_run(n_decode, ctx[later], self._fixed(n_decode, rows, n_decode, False))
            time[later], energy[later] = c_time, c_energy
        return time, energy

    def _decode_run(self, n_decode: int, ctx: np.ndarray, fixed: tuple) -> tuple[np.ndarray, np.ndarray]:
        f_time, _, _, _, f_act, gpu, hidden = fixed
        keys = ctx + n_decode  # decode_attention's keys, compute, memory and busy
        busy = keys * self._dec_m
        busy += n_decode * self._dec_mq
        if self._dec_c > self._dec_m:  # else memory >= compute at every length (rounding is monotonic)
            np.maximum(keys * self._dec_c, busy, out=busy)
        layers = self._layers
        a_time = busy + self._klat
        a_time *= layers
        time = f_time + a_time
        if hidden:
            a_time += gpu  # gpu + a_time (addition commutes exactly), then _exposed
            np.subtract(hidden, a_time, out=a_time)
            time += np.maximum(a_time, 0.0, out=a_time)
        busy *= layers  # a_act, then energy(time, f_act + a_act)
        act = np.add(f_act, busy, out=busy)
        np.minimum(act, time, out=act)
        act *= self._dyn_j
        energy = self._idle_j * time
        energy += act
        return time, energy

    # ---- memory ---------------------------------------------------------------------------
    def max_kv_tokens(self, gpu_memory_utilization: float = 0.9, activation_reserve_frac: float | None = None) -> int:
        """KV token capacity of this client under its engine (see ``kv_capacity_tokens``)."""
        return kv_capacity_tokens(self.device, self.model, self.tp, self.pp, gpu_memory_utilization,
                                  activation_reserve_frac, self.engine)


def _sum(costs: Sequence[Cost]) -> Cost:
    t = c = m = a = 0.0
    for ct, cc, cm, ca in costs:
        t += ct
        c += cc
        m += cm
        a += ca
    return t, c, m, a


def _scale(cost: Cost, k: float) -> Cost:
    return cost[0] * k, cost[1] * k, cost[2] * k, cost[3] * k


__all__ = ["AnalyticalPerfModel", "check_parallelism", "kv_capacity_tokens"]
