"""Simulation specs: a plain document (YAML/JSON/dict) validated into one in-memory form.

Every error names the dotted field it is about (``clients[1].scheduler.block_size``)
so a user can fix a spec without reading code. The validated ``SimSpec`` keeps the
normalised document (``SimSpec.document``) so it can travel over the wire and be
re-validated on the other side.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .engines import ADMISSION, DEFAULT_ENGINE, PROFILES, EngineProfile, get_engine
from .errors import SpecError
from .fields import Fields
from .hardware import get_hardware
from .kv_tiers import parse_tiers
from .models import get_model, parse_dtype
from .pipeline import parse_pipelines
from .vector_search import index_bytes

BATCHING_POLICIES = ("static", "continuous", "chunked", "mixed")
ROUTER_POLICIES = ("round_robin", "least_loaded", "jsq", "power_of_two", "external")
LLM_ROLES = ("both", "prefill", "decode")
ROLES = LLM_ROLES + ("embedding", "retrieval", "generic")
ARRIVAL_PROCESSES = ("poisson", "gamma", "constant", "closed_loop", "trace", "none")
LENGTH_DISTS = ("fixed", "normal", "lognormal", "uniform", "empirical")
BUNDLED_TRACES = {
    "azure_conv": "azure_llm_2023_conv.csv",
    "azure_code": "azure_llm_2023_code.csv",
    "arxiv_summarization": "arxiv_summarization_lengths.csv",
}
DATA_DIR = Path(__file__).parent / "data"
SPEC_PRESET_DIR = Path(__file__).parent / "presets"


# ---------------------------------------------------------------- spec dataclasses


@dataclass(frozen=True)
class SchedulerSpec:
    batching: str = "chunked"
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None  # default: 2048 for chunked, max_model_len otherwise
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    admission: str = "greedy"  # greedy (admit while KV is free, preempt by recompute) | reserve (prompt+output)


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
class LengthSpec:
    dist: str
    params: dict
    minimum: int = 1
    maximum: int | None = None


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

    def client(self, client_id: str) -> ClientSpec:
        for c in self.clients:
            if c.id == client_id:
                return c
        raise KeyError(client_id)


# ---------------------------------------------------------------- parsing


def _preset(value: Any, path: str, getter, what: str):
    """A preset by name, or ``{preset: NAME, <field>: <override>, ...}``."""
    if isinstance(value, str):
        return getter(value, None, path)
    name = Fields(value, path).str("preset")
    if name is None:
        raise SpecError(f"{path}.preset", f"missing (name of a {what} preset)")
    return getter(name, {k: v for k, v in value.items() if k != "preset"}, path)


def _scheduler(doc: Any, path: str, engine: EngineProfile | None = None) -> SchedulerSpec:
    """The client's scheduler: each field given, else the engine profile's default."""
    f = Fields(doc or {}, path)
    d = engine or PROFILES["legacy-2023"]
    spec = SchedulerSpec(
        batching=f.str("batching", d.batching, BATCHING_POLICIES),
        max_num_seqs=f.int("max_num_seqs", d.max_num_seqs),
        max_num_batched_tokens=f.int("max_num_batched_tokens", d.max_num_batched_tokens or None),
        block_size=f.int("block_size", d.block_size),
        gpu_memory_utilization=f.float("gpu_memory_utilization", d.gpu_memory_utilization,
                                       positive=True, maximum=1.0),
        max_model_len=f.int("max_model_len", None),
        admission=f.str("admission", d.admission, ADMISSION),
    )
    f.done()
    return spec


def _clients(doc: Any) -> list[ClientSpec]:
    if not isinstance(doc, list) or not doc:
        raise SpecError("clients", "must be a non-empty list of clients")
    out: list[ClientSpec] = []
    for i, entry in enumerate(doc):
        path = f"clients[{i}]"
        f = Fields(entry, path)
        role = f.str("role", "both", ROLES)
        if "hardware" not in entry and role != "generic":
            raise SpecError(f"{path}.hardware", "missing")
        if "model" not in entry and role in LLM_ROLES + ("embedding",):
            raise SpecError(f"{path}.model", "missing")
        hardware = _preset(f.raw("hardware"), f"{path}.hardware", get_hardware, "hardware") \
            if "hardware" in entry else None
        model = _preset(f.raw("model"), f"{path}.model", get_model, "model") if "model" in entry else None
        tp = f.int("tp", 1)
        pp = f.int("pp", 1)
        replicas = f.int("replicas", 1)
        max_batch = f.int("max_batch", 32)
        concurrency = f.int("concurrency", 1)
        placement = Fields(f.raw("placement") or {}, f"{path}.placement")
        node = placement.str("node", "")
        rack = placement.str("rack", "r0")
        placement.done()
        engine = get_engine(f.raw("engine", DEFAULT_ENGINE), f"{path}.engine")
        dtype = parse_dtype(f.raw("dtype"), f"{path}.dtype")
        if dtype is not None and model is not None:
            model = dtype.apply(model)
        scheduler = _scheduler(f.raw("scheduler"), f"{path}.scheduler", engine)
        perf = Fields(f.raw("perf") or {}, f"{path}.perf")
        perf_kind = perf.str("kind", "analytical")
        perf_options = {k: v for k, v in perf.doc.items() if k != "kind"}
        perf.seen.update(perf_options)
        base_id = f.str("id", f"{(hardware.name if hardware else role).lower()}-{i}")
        f.done()
        for r in range(replicas):
            cid = base_id if replicas == 1 else f"{base_id}-{r}"
            out.append(ClientSpec(cid, hardware, model, tp, pp, role, scheduler, perf_kind, perf_options,
                                  max_batch, concurrency, node or cid, rack, engine, dtype))
    seen: set[str] = set()
    for i, c in enumerate(out):
        if c.id in seen:
            raise SpecError(f"clients[{i}].id", f"duplicate client id {c.id!r}")
        seen.add(c.id)
    return out


def _length(doc: Any, path: str) -> LengthSpec | None:
    if doc is None:
        return None
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        doc = {"dist": "fixed", "value": doc}
    f = Fields(doc, path)
    dist = f.str("dist", "fixed", LENGTH_DISTS)
    params: dict[str, Any] = {}
    if dist == "fixed":
        params["value"] = f.int("value", None)
        if params["value"] is None:
            raise SpecError(f"{path}.value", "missing")
    elif dist == "normal":
        params["mean"] = f.float("mean", None, positive=True)
        params["std"] = f.float("std", 0.0)
        if params["mean"] is None:
            raise SpecError(f"{path}.mean", "missing")
    elif dist == "lognormal":
        params["mean"] = f.float("mean", None, positive=True)
        params["sigma"] = f.float("sigma", None)
        if params["mean"] is None or params["sigma"] is None:
            raise SpecError(f"{path}.{'mean' if params['mean'] is None else 'sigma'}", "missing")
    elif dist == "uniform":
        params["low"] = f.int("low", None)
        params["high"] = f.int("high", None)
        if params["low"] is None or params["high"] is None:
            raise SpecError(f"{path}.{'low' if params['low'] is None else 'high'}", "missing")
        if params["high"] < params["low"]:
            raise SpecError(f"{path}.high", "must be >= low")
    else:  # empirical
        values = f.raw("values")
        source = f.raw("trace")
        if values is None and source is None:
            raise SpecError(f"{path}.values", "missing (give values: [...] or trace: NAME_OR_PATH)")
        if values is not None:
            if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
            ):
                raise SpecError(f"{path}.values", "must be a non-empty list of positive integers")
            params["values"] = list(values)
        else:
            params["trace"] = f.str("trace")
            params["column"] = f.str("column", "num_prefill_tokens")
    minimum = f.int("min", 1)
    maximum = f.int("max", None)
    if maximum is not None and maximum < minimum:
        raise SpecError(f"{path}.max", f"must be >= min ({minimum})")
    f.done()
    return LengthSpec(dist, params, minimum, maximum)


def _workload(doc: Any) -> WorkloadSpec:
    f = Fields(doc or {}, "workload")
    arrival_doc = f.raw("arrival") or {"process": "none"}
    a = Fields(arrival_doc, "workload.arrival")
    process = a.str("process", "poisson", ARRIVAL_PROCESSES)
    params: dict[str, Any] = {}
    if process in ("poisson", "constant", "gamma"):
        params["rate"] = a.float("rate", None, positive=True)
        if params["rate"] is None:
            raise SpecError("workload.arrival.rate", "missing (requests per second)")
        if process == "gamma":
            params["cv"] = a.float("cv", 1.0, positive=True)
    elif process == "closed_loop":
        params["users"] = a.int("users", None)
        if params["users"] is None:
            raise SpecError("workload.arrival.users", "missing (number of concurrent users)")
        params["think_time_s"] = a.float("think_time_s", 0.0)
    elif process == "trace":
        params["trace"] = a.str("trace")
        if params["trace"] is None:
            raise SpecError("workload.arrival.trace", "missing (azure_conv, azure_code or a CSV path)")
        params["time_scale"] = a.float("time_scale", 1.0, positive=True)
        params["start_s"] = a.float("start_s", 0.0)
    a.done()
    prompt = _length(f.raw("prompt_tokens"), "workload.prompt_tokens")
    output = _length(f.raw("output_tokens"), "workload.output_tokens")
    if process not in ("trace", "none"):
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
    weights = {name: mix_f.float(name, None, positive=True) for name in mix}
    prefix = Fields(f.raw("prefix") or {}, "workload.prefix")
    prefix_tokens = prefix.int("tokens", 0, minimum=0)
    prefix_groups = prefix.int("groups", 0, minimum=0)
    prefix.done()
    spec = WorkloadSpec(
        arrival=process,
        arrival_params=params,
        prompt_tokens=prompt,
        output_tokens=output,
        model=f.str("model"),
        num_requests=f.int("num_requests", None),
        duration_s=f.float("duration_s", None, positive=True),
        pipelines=weights,
        prefix_tokens=prefix_tokens,
        prefix_groups=prefix_groups,
    )
    f.done()
    if process in ("poisson", "gamma", "constant", "closed_loop") and spec.num_requests is None \
            and spec.duration_s is None:
        raise SpecError("workload.num_requests", "give num_requests or duration_s to bound the workload")
    return spec


def resolve_data_path(name: str, base_dir: Path | None, field_name: str) -> Path:
    """A bundled trace short name, or a path (relative to the spec file's folder)."""
    if name in BUNDLED_TRACES:
        return DATA_DIR / "traces" / BUNDLED_TRACES[name]
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise SpecError(field_name, f"file not found: {name} (bundled: {', '.join(BUNDLED_TRACES)})")
    return path


def validate(doc: dict) -> SimSpec:
    """Validate a spec document (already parsed) into a SimSpec."""
    f = Fields(doc, "")
    name = f.str("name", "unnamed")
    f.str("description", "")
    seed = f.int("seed", 0, minimum=0)
    clients = _clients(f.raw("clients"))
    router_doc = f.raw("router") or {}
    if isinstance(router_doc, str):
        router_doc = {"policy": router_doc}
    r = Fields(router_doc, "router")
    router = r.str("policy", "round_robin", ROUTER_POLICIES)
    r.done()
    workload = _workload(f.raw("workload"))
    limits = Fields(f.raw("limits") or {}, "limits")
    max_requests = limits.int("max_requests", None)
    limits.done()
    pipelines = parse_pipelines(f.raw("pipelines"))
    topology = _topology(f.raw("topology"))
    kv = Fields(f.raw("kv_cache") or {}, "kv_cache")
    kv_mode = kv.str("mode", "rates", ("rates", "lru"))
    tiers = tuple(parse_tiers(kv.raw("tiers"), "kv_cache.tiers")) if kv.raw("tiers") else ()
    kv.done()
    f.raw("base_dir")
    f.done()
    models = {c.model.name for c in clients if c.is_llm}
    if not models:
        raise SpecError("clients", "needs at least one LLM client (role both, prefill or decode)")
    if workload.model is not None and workload.model not in models:
        raise SpecError("workload.model", f"no client serves model {workload.model!r}; served: {sorted(models)}")
    if workload.model is None and len(models) > 1 and workload.arrival != "none":
        raise SpecError("workload.model", f"several models are served ({sorted(models)}); name one")
    for pipe in workload.pipelines:
        if pipe not in pipelines:
            raise SpecError(f"workload.pipeline.{pipe}", f"no such pipeline; defined: {', '.join(pipelines)}")
    for pipe in workload.pipelines:  # pipelines only injected requests use are checked when they arrive
        check_capable(pipelines[pipe], clients, workload.model or sorted(models)[0], f"pipelines.{pipe}", tiers)
    return SimSpec(name, seed, tuple(clients), router, workload, max_requests, doc, pipelines, topology,
                   tiers, kv_mode)


TOPOLOGY_DEFAULTS = {  # level -> (bandwidth GB/s, latency us)
    "intra_node": (450.0, 2.0),  # NVLink-class within a node
    "node_link": (50.0, 5.0),  # one 400 Gb/s NIC per node (InfiniBand / RoCE)
    "rack_link": (200.0, 10.0),  # each rack's uplink to the pod spine
}


def _topology(doc: Any) -> dict:
    f = Fields(doc or {}, "topology")
    out = {}
    for level, (bw, lat) in TOPOLOGY_DEFAULTS.items():
        lf = Fields(f.raw(level) or {}, f"topology.{level}")
        out[level] = (lf.float("bandwidth_gbs", bw, positive=True), lf.float("latency_us", lat))
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
                what = f"model {m!r} in role {'/'.join(roles)}" if m else f"role {'/'.join(roles)}"
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
        out[path.stem] = yaml.safe_load(path.read_text())
    return out


def _set_dotted(doc: dict, dotted: str, value: Any) -> None:
    node: Any = doc
    parts = dotted.replace("]", "").replace("[", ".").split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(dotted, f"no list element {part!r}")
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


def load_spec(source: str | Path | dict, overrides: dict[str, Any] | None = None) -> SimSpec:
    """Load and validate a spec from a dict, a preset name, a YAML/JSON file path or YAML text."""
    base_dir: Path | None = None
    if isinstance(source, dict):
        doc = copy.deepcopy(source)
    else:
        text = str(source)
        presets = spec_presets() if "\n" not in text else {}
        if text in presets:
            doc = presets[text]
        elif "\n" not in text and Path(text).is_file():
            path = Path(text)
            base_dir = path.resolve().parent
            try:
                doc = yaml.safe_load(path.read_text())
            except yaml.YAMLError as e:
                raise SpecError("spec", f"{path}: not valid YAML: {e}") from None
        elif "\n" in text or text.lstrip().startswith("{"):
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise SpecError("spec", f"not valid YAML/JSON: {e}") from None
        else:
            raise SpecError("spec", f"no such file or preset: {text!r} (presets: {', '.join(presets)})")
    if not isinstance(doc, dict):
        raise SpecError("spec", "must be a mapping")
    _expand_shorthands(doc)
    for key, value in (overrides or {}).items():
        _set_dotted(doc, key, value)
    if base_dir is not None and "base_dir" not in doc:
        doc["base_dir"] = str(base_dir)
    json.dumps(doc)  # a spec must be plain data (it travels over the wire)
    return validate(doc)
