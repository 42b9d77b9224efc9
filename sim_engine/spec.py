"""Simulation specs: a plain document (YAML/JSON/dict) validated into one in-memory form.

Every error names the dotted field it is about (``clients[1].scheduler.block_size``)
so a user can fix a spec without reading code. The validated ``SimSpec`` keeps the
normalised document (``SimSpec.document``) so it can travel over the wire and be
re-validated on the other side.

``load_spec`` is the one validator: a spec it accepts builds a ``Simulation`` without
further spec errors (performance models, KV capacity and trace files are checked here).
Every number has a range (the ``MAX_*`` limits below, listed in docs/SPEC_LIMITS.md),
checked before anything is sized from it, and text is parsed with the limits of
``safe_yaml`` before anything else looks at it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import perf
from .datafiles import BUNDLED_TRACES, DATA_DIR, TraceInfo, check_trace, resolve_data_path
from .engines import ADMISSION, CHUNKING, DEFAULT_ENGINE, PROFILES, EngineProfile, get_engine
from .errors import SpecError
from .fields import Fields, show
from .hardware import get_hardware
from .kv_tiers import parse_tiers
from .lengths import LENGTH_DISTS, LengthSpec, check_length_range, parse_length
from .limits import (
    MAX_BANDWIDTH_GBS,
    MAX_BLOCK_SIZE,
    MAX_CLIENTS,
    MAX_LATENCY_US,
    MAX_NUM_SEQS,
    MAX_OVERRIDES,
    MAX_PARALLEL,
    MAX_PERF_NUMBER,
    MAX_PRESET_NUMBER,
    MAX_RATE,
    MAX_REQUESTS,
    MAX_SCHEDULER_STEPS,
    MAX_SEED,
    MAX_TASK_BATCH,
    MAX_TIME_SCALE,
    MAX_TOKENS,
    MAX_USERS,
    MAX_WEIGHT,
)
from .models import get_model, parse_dtype
from .pipeline import parse_pipelines
from .safe_yaml import MAX_SPEC_BYTES, check_plain, parse_yaml
from .units import MAX_TIME_S
from .vector_search import index_bytes

__all__ = ["BUNDLED_TRACES", "DATA_DIR", "LENGTH_DISTS", "LengthSpec", "resolve_data_path"]  # re-exported

BATCHING_POLICIES = ("static", "continuous", "chunked", "mixed", "external")
ROUTER_POLICIES = ("round_robin", "least_loaded", "jsq", "power_of_two", "external")
LLM_ROLES = ("both", "prefill", "decode")
ROLES = LLM_ROLES + ("embedding", "retrieval", "generic")
ARRIVAL_PROCESSES = ("poisson", "gamma", "constant", "closed_loop", "trace", "none")
OVER_CAP = ("drop", "clip")  # what a (prompt, output) pair longer than lengths.max_total_tokens becomes
SPEC_PRESET_DIR = Path(__file__).parent / "presets"



# ---------------------------------------------------------------- spec dataclasses


@dataclass(frozen=True)
class SchedulerSpec:
    batching: str = "chunked"
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # default: 2048 chunked, max_num_seqs x max_model_len static, else max_model_len
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    admission: str = "greedy"  # greedy (admit while KV is free, preempt by recompute) | reserve (prompt+output)
    prefix_caching: bool = False  # freed KV blocks stay reusable until evicted (sim_engine/prefix_cache.py)
    num_scheduler_steps: int = 1  # decode steps per scheduling decision (multi-step scheduling, sim_engine/engines.py)


@dataclass(frozen=True)
class ClientSpec:
    id: str
    hardware: Any  # sim_engine.hardware.Device (None for a generic client without hardware)
    model: Any  # sim_engine.models.ModelArch (None for retrieval and generic clients)
    tp: int = 1
    pp: int = 1
    role: str = "both"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    perf_kind: str = "analytical"
    perf_options: dict = field(default_factory=dict)
    max_batch: int = 32  # embedding / retrieval clients: tasks per batch
    concurrency: int = 1  # generic clients: tasks served at once
    node: str = ""  # placement in the topology (default: a node of its own)
    rack: str = "r0"
    engine: Any = None  # sim_engine.engines.EngineProfile (its defaults fill the scheduler)
    dtype: Any = None  # sim_engine.models.Precision, or None for the model preset's own formats

    @property
    def compute_dtype(self) -> str | None:
        return self.dtype.compute if self.dtype is not None else None

    @property
    def is_llm(self) -> bool:
        return self.role in LLM_ROLES

    @property
    def n_devices(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class PairLengthSpec:
    """(prompt, output) pairs drawn together from a trace's rows, so their correlation is kept."""

    trace: str | None  # None: the arrival trace's own rows, in order
    max_total_tokens: int | None = None
    over_cap: str = "drop"  # drop the pair, or clip it to the cap keeping its prompt:output ratio


@dataclass(frozen=True)
class WorkloadSpec:
    arrival: str
    arrival_params: dict
    prompt_tokens: LengthSpec | None
    output_tokens: LengthSpec | None
    model: str | None
    num_requests: int | None
    duration_s: float | None
    pipelines: dict = field(default_factory=lambda: {"default": 1.0})  # pipeline name -> weight
    prefix_tokens: int = 0  # leading prompt tokens that are a cacheable shared prefix (kv_retrieval)
    prefix_groups: int = 0  # distinct prefixes (0: every request has its own)
    lengths: PairLengthSpec | None = None  # joint (prompt, output) pairs; excludes prompt_tokens/output_tokens


@dataclass(frozen=True)
class SimSpec:
    name: str
    seed: int
    clients: tuple[ClientSpec, ...]
    router: str
    workload: WorkloadSpec
    max_requests: int | None
    document: dict  # the normalised document this spec was validated from
    pipelines: dict = field(default_factory=dict)  # name -> tuple[pipeline.Stage, ...]
    topology: dict = field(default_factory=dict)  # link level -> (bandwidth GB/s, latency us)
    kv_tiers: tuple = ()  # kv_tiers.TierSpec, fastest first
    kv_mode: str = "rates"
    data_dir: Path | None = None  # the only folder trace paths may name (None: bundled traces only)
    traces: dict = field(default_factory=dict, compare=False)  # field -> datafiles.TraceInfo

    def client(self, client_id: str) -> ClientSpec:
        for c in self.clients:
            if c.id == client_id:
                return c
        raise KeyError(client_id)

    def refuse_external_batching(self, runner: str) -> None:
        """SpecError when a client batches externally: ``runner`` answers no batch decisions (it would stall)."""
        for i, c in enumerate(self.clients):
            if c.is_llm and c.scheduler.batching == "external":
                raise SpecError(f"clients[{i}].scheduler.batching", f"client {c.id!r}: external batching needs a "
                                f"co-simulation client that answers batch decisions (hermes serve); {runner} does not")


# ---------------------------------------------------------------- parsing


def _preset(value: Any, path: str, getter, what: str):
    """A preset by name, or ``{preset: NAME, <field>: <override>, ...}`` (every number then in range)."""
    if isinstance(value, str):
        return getter(value, None, path)
    name = Fields(value, path).str("preset")
    if name is None:
        raise SpecError(f"{path}.preset", f"missing (name of a {what} preset)")
    overrides = {k: v for k, v in value.items() if k != "preset"}
    for key, v in overrides.items():  # before the preset code does arithmetic with them
        for sub, x in (v.items() if isinstance(v, dict) else [(None, v)]):
            if isinstance(x, (int, float)) and not isinstance(x, bool) and not (abs(x) <= MAX_PRESET_NUMBER):
                where = f"{path}.{key}" + (f".{sub}" if sub is not None else "")
                raise SpecError(where, f"must be a finite number of at most {MAX_PRESET_NUMBER:g}, got {show(x)}")
    out = getter(name, overrides, path)
    _check_numbers(out, path)
    return out


def _check_numbers(obj: Any, path: str) -> None:
    """Every number of a hardware or model (after overrides) is finite and at most MAX_PRESET_NUMBER."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, v in items:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not (math.isfinite(v) and abs(v) <= MAX_PRESET_NUMBER):
                where = f"{path}.{f.name}" + (f".{key}" if key is not None else "")
                raise SpecError(where, f"must be a finite number of at most {MAX_PRESET_NUMBER:g}, got {v}")


def _scheduler(doc: Any, path: str, engine: EngineProfile | None = None, model_len: int = 0) -> SchedulerSpec:
    """The client's scheduler: each field given, else the engine profile's default.

    ``model_len``: the model's context, which ``max_model_len`` defaults to (an engine may turn
    chunked prefill on by default above a length, ``EngineProfile.chunked_above_len``)."""
    f = Fields(doc or {}, path)
    d = engine or PROFILES["legacy-2023"]
    max_model_len = f.int("max_model_len", None, maximum=MAX_TOKENS)
    steps = f.int("num_scheduler_steps", d.num_scheduler_steps, maximum=MAX_SCHEDULER_STEPS)
    long_context = d.chunked_above_len and (max_model_len or model_len) > d.chunked_above_len and steps == 1
    batching = f.str("batching", "chunked" if long_context else d.batching, BATCHING_POLICIES)
    # an external scheduler is shown no cached blocks, so under external batching the GPU prefix
    # cache is off (the profile's default yields; asking for it is an error)
    caching = f.bool("prefix_caching", d.prefix_caching and batching != "external")
    if caching and batching == "external":
        raise SpecError(f"{path}.prefix_caching", "the GPU prefix cache is not available with batching: external")
    if batching == "external" and "num_scheduler_steps" not in f.doc:
        steps = 1  # the outside scheduler decides every step: the profile's multi-step default yields
    if steps > 1 and batching == "external":
        raise SpecError(f"{path}.num_scheduler_steps", "multi-step scheduling needs a built-in batching policy: "
                        "with batching: external the co-simulation client decides every step")
    spec = SchedulerSpec(
        batching=batching,
        max_num_seqs=f.int("max_num_seqs", d.max_num_seqs, maximum=MAX_NUM_SEQS),
        # the engine's per-step budget is a chunked-prefill budget: a mode that prefills whole prompts
        # (static, continuous, mixed) is not limited by it (vLLM without chunked prefill requires
        # max_num_batched_tokens >= max_model_len); only a budget given here limits such a mode
        max_num_batched_tokens=f.int("max_num_batched_tokens",
                                     d.max_num_batched_tokens or None if batching in CHUNKING else None,
                                     maximum=MAX_TOKENS),
        block_size=f.int("block_size", d.block_size, maximum=MAX_BLOCK_SIZE),
        gpu_memory_utilization=f.float("gpu_memory_utilization", d.gpu_memory_utilization,
                                       positive=True, maximum=1.0),
        max_model_len=max_model_len,
        admission=f.str("admission", d.admission, ADMISSION),
        prefix_caching=caching,
        num_scheduler_steps=steps,
    )
    f.done()
    return spec


def _clients(doc: Any, data_dir: Path | None = None, entry_path: str | None = None) -> list[ClientSpec]:
    """Client specs (replicas expanded), each checked as the simulation will build it.

    ``entry_path`` names a single entry in errors (``client`` for a client added at run time).
    """
    if not isinstance(doc, list) or not doc:
        raise SpecError("clients", "must be a non-empty list of clients")
    out: list[ClientSpec] = []
    for i, entry in enumerate(doc):
        path = entry_path or f"clients[{i}]"
        f = Fields(entry, path)
        role = f.str("role", "both", ROLES)
        if "hardware" not in entry and role != "generic":
            raise SpecError(f"{path}.hardware", "missing")
        if "model" not in entry and role in LLM_ROLES + ("embedding",):
            raise SpecError(f"{path}.model", "missing")
        hardware = _preset(f.raw("hardware"), f"{path}.hardware", get_hardware, "hardware") \
            if "hardware" in entry else None
        model = _preset(f.raw("model"), f"{path}.model", get_model, "model") if "model" in entry else None
        tp = f.int("tp", 1, maximum=MAX_PARALLEL)
        pp = f.int("pp", 1, maximum=MAX_PARALLEL)
        replicas = f.int("replicas", 1, maximum=MAX_CLIENTS)
        if len(out) + replicas > MAX_CLIENTS:
            raise SpecError(f"{path}.replicas", f"the spec would have more than {MAX_CLIENTS} clients")
        max_batch = f.int("max_batch", 32, maximum=MAX_TASK_BATCH)
        concurrency = f.int("concurrency", 1, maximum=MAX_TASK_BATCH)
        placement = Fields(f.raw("placement") or {}, f"{path}.placement")
        node = placement.str("node", "")
        rack = placement.str("rack", "r0")
        placement.done()
        engine = get_engine(f.raw("engine", DEFAULT_ENGINE), f"{path}.engine")
        if hardware is not None:
            engine = engine.for_device(hardware)  # host time and batch defaults of this GPU
        dtype = parse_dtype(f.raw("dtype"), f"{path}.dtype", engine.quantised_kv)
        if dtype is not None and model is not None:
            model = dtype.apply(model)
        scheduler = _scheduler(f.raw("scheduler"), f"{path}.scheduler", engine, model.max_context if model else 0)
        perf = Fields(f.raw("perf") or {}, f"{path}.perf")
        perf_kind = perf.str("kind", "analytical")
        perf_options = _perf_options(perf, data_dir)
        base_id = f.str("id", f"{(hardware.name if hardware else role).lower()}-{i}")
        f.done()
        proto = ClientSpec(base_id, hardware, model, tp, pp, role, scheduler, perf_kind, perf_options,
                           max_batch, concurrency, base_id, rack, engine, dtype)
        build_client_parts(proto, path)
        for r in range(replicas):
            cid = base_id if replicas == 1 else f"{base_id}-{r}"
            out.append(ClientSpec(cid, hardware, model, tp, pp, role, scheduler, perf_kind, perf_options,
                                  max_batch, concurrency, node or cid, rack, engine, dtype))
    seen: set[str] = set()
    for i, c in enumerate(out):
        if c.id in seen:
            raise SpecError(f"clients[{i}].id", f"duplicate client id {show(c.id)}")
        seen.add(c.id)
    return out


def _perf_options(f: Fields, data_dir: Path | None) -> dict:
    """The performance model's options (names are checked by the model); a trace path must be allowed."""
    out = {}
    for key, value in f.doc.items():
        if key == "kind":
            continue
        f.seen.add(key)
        if not isinstance(key, str) or key in ("device", "model", "tp", "pp"):
            raise SpecError(f.name(key), "unknown field (hardware, model, tp and pp are client fields)")
        if key == "trace_path" and value is not None:
            out[key] = str(resolve_data_path(f.str(key), data_dir, f.name(key)))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = f.float(key, None, minimum=0.0, maximum=MAX_PERF_NUMBER) \
                if isinstance(value, float) else f.int(key, None, minimum=0, maximum=int(MAX_PERF_NUMBER))
        elif not isinstance(value, (str, bool)) and value is not None:
            raise SpecError(f.name(key), f"must be a number, a string or a boolean, got {type(value).__name__}")
        else:
            out[key] = value
    return out


def build_client_parts(cs: ClientSpec, path: str) -> tuple[Any, int]:
    """(performance model, KV capacity in tokens) of a client, as the simulation builds it.

    Validation calls this too, so a spec ``load_spec`` accepts never fails later in
    ``Simulation()``; errors of the performance model are named inside the client (``path``).
    Clients without a model of their own (retrieval, generic) get (None, 0).
    """
    if cs.model is None or cs.role not in LLM_ROLES + ("embedding",):
        return None, 0
    try:
        if not cs.is_llm:
            return perf.build_perf_model(cs.hardware, cs.model, tp=cs.tp, pp=cs.pp, kind=cs.perf_kind,
                                         **cs.perf_options), 0
        opts = {"engine": cs.engine, **cs.perf_options}
        if cs.compute_dtype is not None:
            opts.setdefault("compute_dtype", cs.compute_dtype)
        model = perf.build_perf_model(cs.hardware, cs.model, tp=cs.tp, pp=cs.pp, kind=cs.perf_kind, **opts)
        capacity = perf.kv_capacity_tokens(cs.hardware, cs.model, cs.tp, cs.pp,
                                           cs.scheduler.gpu_memory_utilization, engine=model.engine)
    except SpecError as e:
        raise SpecError(f"{path}.{e.field}", e.reason) from None
    if capacity // cs.scheduler.block_size < 1:
        raise SpecError(f"{path}.scheduler.gpu_memory_utilization",
                        f"leaves room for {capacity} KV tokens: not one block of {cs.scheduler.block_size}")
    return model, capacity


def _pair_lengths(doc: Any, path: str, process: str) -> PairLengthSpec | None:
    """``lengths: {trace: azure_conv, max_total_tokens: 4096, over_cap: drop|clip}`` (or ``lengths: NAME``)."""
    if doc is None:
        return None
    if isinstance(doc, str):
        doc = {"trace": doc}
    f = Fields(doc, path)
    trace = f.str("trace")
    cap = f.int("max_total_tokens", None, minimum=2, maximum=MAX_TOKENS)
    over_cap = f.str("over_cap", "drop", OVER_CAP)
    f.done()
    if trace is None and process != "trace":
        raise SpecError(f"{path}.trace", "missing (azure_conv, azure_code, arxiv_summarization or a CSV path; "
                        "it may be left out only with an arrival trace, whose rows then give the lengths)")
    if "over_cap" in doc and cap is None:
        raise SpecError(f"{path}.over_cap", "needs max_total_tokens")
    return PairLengthSpec(trace, cap, over_cap)


def _workload(doc: Any) -> WorkloadSpec:
    f = Fields(doc or {}, "workload")
    arrival_doc = f.raw("arrival") or {"process": "none"}
    a = Fields(arrival_doc, "workload.arrival")
    process = a.str("process", "poisson", ARRIVAL_PROCESSES)
    params: dict[str, Any] = {}
    if process in ("poisson", "constant", "gamma"):
        params["rate"] = a.float("rate", None, positive=True, maximum=MAX_RATE)
        if params["rate"] is None:
            raise SpecError("workload.arrival.rate", "missing (requests per second)")
        if process == "gamma":
            params["cv"] = a.float("cv", 1.0, positive=True, maximum=1e3)
    elif process == "closed_loop":
        params["users"] = a.int("users", None, maximum=MAX_USERS)
        if params["users"] is None:
            raise SpecError("workload.arrival.users", "missing (number of concurrent users)")
        params["think_time_s"] = a.float("think_time_s", 0.0, maximum=MAX_TIME_S)
    elif process == "trace":
        params["trace"] = a.str("trace")
        if params["trace"] is None:
            raise SpecError("workload.arrival.trace", "missing (azure_conv, azure_code or a CSV path)")
        params["time_scale"] = a.float("time_scale", 1.0, positive=True, maximum=MAX_TIME_SCALE)
        params["start_s"] = a.float("start_s", 0.0, maximum=MAX_TIME_S)
    a.done()
    prompt = check_length_range(parse_length(f.raw("prompt_tokens"), "workload.prompt_tokens"), "workload.prompt_tokens")
    output = check_length_range(parse_length(f.raw("output_tokens"), "workload.output_tokens"), "workload.output_tokens")
    lengths = _pair_lengths(f.raw("lengths"), "workload.lengths", process)
    if lengths is not None and (prompt is not None or output is not None):
        raise SpecError("workload.lengths", "give lengths (joint pairs) or prompt_tokens/output_tokens, not both")
    if process not in ("trace", "none") and lengths is None:
        if prompt is None:
            raise SpecError("workload.prompt_tokens", "missing")
        if output is None:
            raise SpecError("workload.output_tokens", "missing")
    mix = f.raw("pipeline", "default")
    if isinstance(mix, str):
        mix = {mix: 1.0}
    if not isinstance(mix, dict) or not mix:
        raise SpecError("workload.pipeline", "must be a pipeline name or a map of names to weights")
    mix_f = Fields(mix, "workload.pipeline")
    weights = {name: mix_f.float(name, None, positive=True, maximum=MAX_WEIGHT) for name in mix}
    prefix = Fields(f.raw("prefix") or {}, "workload.prefix")
    prefix_tokens = prefix.int("tokens", 0, minimum=0, maximum=MAX_TOKENS)
    prefix_groups = prefix.int("groups", 0, minimum=0, maximum=MAX_REQUESTS)
    prefix.done()
    spec = WorkloadSpec(
        arrival=process,
        arrival_params=params,
        prompt_tokens=prompt,
        output_tokens=output,
        model=f.str("model"),
        num_requests=f.int("num_requests", None, maximum=MAX_REQUESTS),
        duration_s=f.float("duration_s", None, positive=True, maximum=MAX_TIME_S),
        pipelines=weights,
        prefix_tokens=prefix_tokens,
        prefix_groups=prefix_groups,
        lengths=lengths,
    )
    f.done()
    if process in ("poisson", "gamma", "constant", "closed_loop") and spec.num_requests is None \
            and spec.duration_s is None:
        raise SpecError("workload.num_requests", "give num_requests or duration_s to bound the workload")
    return spec


def _trace_fields(workload: WorkloadSpec, pipelines: dict) -> list[tuple[str, str]]:
    """(field, name or path) of every trace file the spec reads."""
    out = []
    if workload.arrival == "trace":
        out.append(("workload.arrival.trace", workload.arrival_params["trace"]))
    for key in ("prompt_tokens", "output_tokens"):
        ls = getattr(workload, key)
        if ls is not None and "trace" in ls.params:
            out.append((f"workload.{key}.trace", ls.params["trace"]))
    if workload.lengths is not None and workload.lengths.trace is not None:
        out.append(("workload.lengths.trace", workload.lengths.trace))
    for name, stages in pipelines.items():
        for i, st in enumerate(stages):
            ls = st.params.get("reasoning", {}).get("thinking_tokens")
            if ls is not None and "trace" in ls.params:
                out.append((f"pipelines.{name}[{i}].thinking_tokens.trace", ls.params["trace"]))
    return out


def _check_traces(workload: WorkloadSpec, pipelines: dict, data_dir: Path | None) -> dict[str, TraceInfo]:
    infos = {}
    for where, name in _trace_fields(workload, pipelines):
        infos[where] = check_trace(resolve_data_path(name, data_dir, where), where)
    arrival = infos.get("workload.arrival.trace")
    if arrival is not None:
        if not arrival.has_arrivals:
            raise SpecError("workload.arrival.trace", "trace has no arrived_at column")
        start = workload.arrival_params["start_s"]
        if start > arrival.last_arrival_s:
            raise SpecError("workload.arrival.start_s", f"{start} s is past the trace's last arrival "
                            f"({arrival.last_arrival_s} s): no request would arrive")
    return infos


def validate(doc: dict, data_dir: str | Path | None = None) -> SimSpec:
    """Validate a spec document (already parsed, plain data) into a SimSpec.

    ``data_dir`` is the one folder trace paths may name; without it only bundled traces are read.
    """
    data_dir = Path(data_dir) if data_dir is not None else None
    f = Fields(doc, "")
    name = f.str("name", "unnamed")
    f.str("description", "")
    seed = f.int("seed", 0, minimum=0, maximum=MAX_SEED)
    clients = _clients(f.raw("clients"), data_dir)
    router_doc = f.raw("router") or {}
    if isinstance(router_doc, str):
        router_doc = {"policy": router_doc}
    r = Fields(router_doc, "router")
    router = r.str("policy", "round_robin", ROUTER_POLICIES)
    r.done()
    workload = _workload(f.raw("workload"))
    limits = Fields(f.raw("limits") or {}, "limits")
    max_requests = limits.int("max_requests", None, maximum=MAX_REQUESTS)
    limits.done()
    pipelines = parse_pipelines(f.raw("pipelines"))
    topology = _topology(f.raw("topology"))
    kv = Fields(f.raw("kv_cache") or {}, "kv_cache")
    kv_mode = kv.str("mode", "rates", ("rates", "lru"))
    tiers = tuple(parse_tiers(kv.raw("tiers"), "kv_cache.tiers")) if kv.raw("tiers") else ()
    for i, t in enumerate(tiers):
        if kv_mode == "rates" and t.hit_rate is None:
            raise SpecError(f"kv_cache.tiers[{i}].hit_rate", "is required in rates mode (or set kv_cache.mode: lru)")
    kv.done()
    f.raw("base_dir")  # written by older versions; ignored: only the caller's data_dir opens files
    f.done()
    models = {c.model.name for c in clients if c.is_llm}
    if not models:
        raise SpecError("clients", "needs at least one LLM client (role both, prefill or decode)")
    if workload.model is not None and workload.model not in models:
        raise SpecError("workload.model", f"no client serves model {show(workload.model)}; served: {sorted(models)}")
    if workload.model is None and len(models) > 1 and workload.arrival != "none":
        raise SpecError("workload.model", f"several models are served ({sorted(models)}); name one")
    for pipe in workload.pipelines:
        if pipe not in pipelines:
            raise SpecError(f"workload.pipeline.{pipe}", f"no such pipeline; defined: {', '.join(pipelines)}")
    for pipe in workload.pipelines:  # pipelines only injected requests use are checked when they arrive
        check_capable(pipelines[pipe], clients, workload.model or sorted(models)[0], f"pipelines.{pipe}", tiers)
    traces = _check_traces(workload, pipelines, data_dir)
    return SimSpec(name, seed, tuple(clients), router, workload, max_requests, doc, pipelines, topology,
                   tiers, kv_mode, data_dir, traces)


# What an RDMA NIC (InfiniBand / RoCE / EFA) delivers of its line rate to a KV transfer engine moving
# blocks of 256 KB or more: FastDeploy's KVTransferManager and Mooncake's transfer engine on one 400 Gb/s
# RoCE NIC reach 45.0 and 40.7 of 50 GB/s (mean 0.857; serving_engines.csv). Held out: 16 EFA and
# multi-NIC rows, benchmarks/fidelity_transfers.py. A spec's bandwidth_gbs is used as given.
NIC_EFFICIENCY = 0.86
TOPOLOGY_DEFAULTS = {  # level -> (bandwidth GB/s, latency us)
    "intra_node": (450.0, 2.0),  # NVLink-class within a node
    "node_link": (50.0 * NIC_EFFICIENCY, 5.0),  # one 400 Gb/s NIC per node (InfiniBand / RoCE), as achieved
    "rack_link": (200.0 * NIC_EFFICIENCY, 10.0),  # each rack's uplink to the pod spine (4 such NICs), as achieved
}


def _topology(doc: Any) -> dict:
    f = Fields(doc or {}, "topology")
    out = {}
    for level, (bw, lat) in TOPOLOGY_DEFAULTS.items():
        lf = Fields(f.raw(level) or {}, f"topology.{level}")
        out[level] = (lf.float("bandwidth_gbs", bw, positive=True, maximum=MAX_BANDWIDTH_GBS),
                      lf.float("latency_us", lat, maximum=MAX_LATENCY_US))
        lf.done()
    f.done()
    return out


def check_capable(stages, clients, model: str, path: str, tiers) -> None:
    """Every stage of a pipeline needs a client that can serve it (errors name the stage)."""
    from .pipeline import STAGE_ROLES

    models = {model}
    for i, st in enumerate(stages):
        where = f"{path}[{i}]"
        if st.kind == "route":
            models = set(st.params.get("probabilities") or [r["model"] for r in st.params["rules"]]
                         + [st.params["default"]])
            continue
        roles = STAGE_ROLES[st.kind]
        if st.kind in ("embed", "rerank"):
            need = {st.params["model"]}
        elif st.kind in ("llm", "prefill", "decode", "kv_retrieval"):
            need = models
        else:
            need = None
        for m in sorted(need or [None]):
            if not any(c.role in roles and (m is None or (c.model is not None and c.model.name == m))
                       for c in clients):
                what = f"model {show(m)} in role {'/'.join(roles)}" if m else f"role {'/'.join(roles)}"
                raise SpecError(where, f"no client can serve this {st.kind} stage (needs {what})")
        if st.kind == "kv_retrieval" and not tiers:
            raise SpecError(where, "kv_retrieval needs kv_cache.tiers")
        if st.kind == "search":
            need_gb = index_bytes(st.params["index"]) / 1e9
            if not any(c.role in roles and c.hardware.mem_gb * c.n_devices >= need_gb for c in clients):
                raise SpecError(f"{where}.index", f"the index needs {need_gb:.0f} GB; no retrieval client has "
                                "that much memory")


def spec_presets() -> dict[str, dict]:
    """Named whole-spec presets (the files of sim_engine/presets/), name -> document."""
    out = {}
    for path in sorted(SPEC_PRESET_DIR.glob("*.yaml")):
        out[path.stem] = parse_yaml(path.read_text(), f"preset {path.stem}")
    return out


def _set_dotted(doc: dict, dotted: str, value: Any) -> None:
    node: Any = doc
    parts = dotted.replace("]", "").replace("[", ".").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(dotted, f"no list element {show(part)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(dotted, f"cannot set a field inside {type(node).__name__}")


def _expand_shorthands(doc: dict) -> None:
    """Write short forms out (``router: jsq``, ``prompt_tokens: 512``) so dotted overrides can reach inside."""
    if isinstance(doc.get("router"), str):
        doc["router"] = {"policy": doc["router"]}
    w = doc.get("workload")
    if isinstance(w, dict):
        for key in ("prompt_tokens", "output_tokens"):
            v = w.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                w[key] = {"dist": "fixed", "value": v}
        if isinstance(w.get("lengths"), str):
            w["lengths"] = {"trace": w["lengths"]}


def _read_spec_file(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("spec", f"{path.name} is larger than the limit of {MAX_SPEC_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("spec", f"{path.name} is not UTF-8 text") from None


def load_spec(source: str | Path | dict, overrides: dict[str, Any] | None = None,
              data_dir: str | Path | None = None) -> SimSpec:
    """Load and validate a spec from a dict, a preset name, a YAML/JSON file path or YAML text.

    Text is parsed with the limits of ``safe_yaml`` (size, depth, values, aliases, no tags);
    a dict gets the same limits. ``data_dir`` is the only folder a trace path in the spec may
    name (None: bundled traces only); a spec file's own folder is not implied, the caller
    (e.g. ``hermes simulate``) passes it when it trusts the file.
    """
    if isinstance(source, dict):
        check_plain(source)
        doc = copy_plain(source)
    else:
        text = str(source)
        presets = spec_presets() if "\n" not in text else {}
        if text in presets:
            doc = presets[text]
        elif "\n" not in text and len(text) < 4096 and Path(text).is_file():
            doc = parse_yaml(_read_spec_file(Path(text)))
        elif "\n" in text or text.lstrip().startswith("{"):
            doc = parse_yaml(text)
        else:
            raise SpecError("spec", f"no such file or preset: {text[:200]!r} (presets: {', '.join(presets)})")
    if not isinstance(doc, dict):
        raise SpecError("spec", "must be a mapping")
    _expand_shorthands(doc)
    overrides = overrides or {}
    if len(overrides) > MAX_OVERRIDES:
        raise SpecError("overrides", f"more than {MAX_OVERRIDES} overrides")
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise SpecError("overrides", f"an override key must be a dotted field name, got {str(key)[:64]!r}")
        check_plain(value, key)
        _set_dotted(doc, key, copy_plain(value))
    check_plain(doc)
    json.dumps(doc)  # a spec must be plain data (it travels over the wire)
    return validate(doc, data_dir)


def copy_plain(value: Any) -> Any:
    """A deep copy of plain data (dicts, lists; tuples become lists), without recursion."""
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: Any = {} if isinstance(value, dict) else []
    work = [(value, root)]
    while work:
        src, dst = work.pop()
        for k, v in (src.items() if isinstance(src, dict) else enumerate(src)):
            if isinstance(v, (dict, list, tuple)):
                child: Any = {} if isinstance(v, dict) else []
                work.append((v, child))
                v = child
            if isinstance(dst, dict):
                dst[k] = v
            else:
                dst.append(v)
    return root
