"""Hostile and careless specs at the engine level: each is a SpecError naming the field, fast and small.

Categories: numbers out of range or not numbers (NaN, inf, 1e300 in integer fields), sizes
that would allocate without bound (block_size, replicas, users, branches, includes), YAML
bombs and tags, deep nesting, paths outside the data directory, and impossible
configurations. Every case runs under loose bounds (< 2 s, < 200 MB of Python allocations).
A hypothesis test generates random spec documents: load_spec returns a SimSpec or raises
SpecError, never anything else.
"""

from __future__ import annotations

import copy
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_engine import SimSpec, Simulation, SpecError, estimate_memory_bytes, load_spec, parse_yaml
from sim_engine.fields import show

BASE = {
    "name": "h",
    "clients": [{"id": "a", "hardware": "H100-SXM", "model": "llama-3.1-8b"}],
    "workload": {"arrival": {"process": "poisson", "rate": 4.0}, "prompt_tokens": 100, "output_tokens": 20,
                 "num_requests": 10},
}
MAX_SECONDS = 2.0
MAX_BYTES = 200 << 20

NAN, INF = float("nan"), float("inf")

# (overrides on BASE, field the error must name)
OVERRIDES = [
    ({"clients[0].scheduler.block_size": 1e9}, "clients[0].scheduler.block_size"),
    ({"clients[0].scheduler.block_size": NAN}, "clients[0].scheduler.block_size"),
    ({"clients[0].scheduler.block_size": INF}, "clients[0].scheduler.block_size"),
    ({"clients[0].scheduler.prefix_caching": "yes"}, "clients[0].scheduler.prefix_caching"),
    ({"clients[0].scheduler.prefix_caching": 1}, "clients[0].scheduler.prefix_caching"),
    ({"clients[0].engine": {"preset": "vllm", "prefix_caching": [True]}}, "clients[0].engine.prefix_caching"),
    ({"clients[0].scheduler.max_num_seqs": 1e300}, "clients[0].scheduler.max_num_seqs"),
    ({"clients[0].scheduler.num_scheduler_steps": 2**62}, "clients[0].scheduler.num_scheduler_steps"),
    ({"clients[0].scheduler.num_scheduler_steps": NAN}, "clients[0].scheduler.num_scheduler_steps"),
    ({"clients[0].engine": {"preset": "vllm-v0", "num_scheduler_steps": 0}}, "clients[0].engine.num_scheduler_steps"),
    ({"clients[0].engine": {"preset": "vllm-v0", "chunked_above_len": 2**80}}, "clients[0].engine.chunked_above_len"),
    ({"clients[0].hardware": "NVIDIA H100 " * 100_000}, "clients[0].hardware"),  # matched by name: bounded
    ({"clients[0].model": "meta-llama/" * 100_000}, "clients[0].model"),
    ({"clients[0].scheduler.max_num_batched_tokens": -INF}, "clients[0].scheduler.max_num_batched_tokens"),
    ({"clients[0].scheduler.max_model_len": 2**80}, "clients[0].scheduler.max_model_len"),
    ({"clients[0].scheduler.gpu_memory_utilization": NAN}, "clients[0].scheduler.gpu_memory_utilization"),
    ({"clients[0].scheduler.gpu_memory_utilization": 1e-9}, "clients[0].model"),  # the weights do not fit
    ({"clients[0].replicas": 1e9}, "clients[0].replicas"),
    ({"clients[0].replicas": 1000, "clients[1]": {"hardware": "H100-SXM", "model": "llama-3.1-8b"}}, "clients"),
    ({"clients[0].tp": 3}, "clients[0].tp"),
    ({"clients[0].tp": 1e300}, "clients[0].tp"),
    ({"clients[0].pp": 0}, "clients[0].pp"),
    ({"clients[0].perf.warp_factor": 9}, "clients[0].perf.warp_factor"),
    ({"clients[0].perf.kind": "quantum"}, "clients[0].perf.kind"),
    ({"clients[0].perf": {"model": None}}, "clients[0].perf.model"),
    ({"clients[0].perf.step_overhead_s": 1e300}, "clients[0].perf.step_overhead_s"),
    ({"clients[0].perf.step_overhead_s": [1, 2]}, "clients[0].perf.step_overhead_s"),
    ({"clients[0].perf.kind": "trace", "clients[0].perf.trace_path": "/etc/passwd"}, "clients[0].perf.trace_path"),
    ({"clients[0].model": "llama-3.1-405b"}, "clients[0].model"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "mem_gb": 1e300}}, "clients[0].hardware.mem_gb"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "mem_gb": NAN}}, "clients[0].hardware.mem_gb"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "tflops": {"bf16": INF}}}, "clients[0].hardware.tflops"),
    ({"clients[0].model": {"preset": "llama-3.1-8b", "n_layers": 1e300}}, "clients[0].model"),
    ({"workload.num_requests": 1e300}, "workload.num_requests"),
    ({"workload.num_requests": NAN}, "workload.num_requests"),
    ({"workload.num_requests": "many"}, "workload.num_requests"),
    ({"workload.arrival.rate": INF}, "workload.arrival.rate"),
    ({"workload.arrival.rate": 1e300}, "workload.arrival.rate"),
    ({"workload.arrival.rate": 10**400}, "workload.arrival.rate"),  # beyond the float range
    ({"clients[0].hardware": {"preset": "H100-SXM", "mem_gb": 10**400}}, "clients[0].hardware.mem_gb"),
    ({"workload.pipeline": {"default": 10**400}}, "workload.pipeline.default"),
    ({"workload.arrival": {"process": "closed_loop", "users": 10**9}}, "workload.arrival.users"),
    ({"workload.arrival": {"process": "closed_loop", "users": 5, "think_time_s": 1e300}},
     "workload.arrival.think_time_s"),
    ({"workload.duration_s": 1e300}, "workload.duration_s"),
    ({"workload.prompt_tokens.value": 1e300}, "workload.prompt_tokens.value"),
    ({"workload.prompt_tokens.value": NAN}, "workload.prompt_tokens.value"),
    ({"workload.output_tokens": {"dist": "lognormal", "mean": 100, "sigma": 1e300}}, "workload.output_tokens.sigma"),
    ({"workload.output_tokens": {"dist": "uniform", "low": 1, "high": 10**12}}, "workload.output_tokens.high"),
    ({"workload.output_tokens": {"dist": "empirical", "values": [1, 10**15]}}, "workload.output_tokens.values"),
    ({"workload.prefix": {"tokens": 1e300, "groups": 2}}, "workload.prefix.tokens"),
    ({"workload.prefix": {"tokens": 10, "groups": -1}}, "workload.prefix.groups"),
    ({"limits.max_requests": INF}, "limits.max_requests"),
    ({"seed": 2**70}, "seed"),
    ({"seed": -1}, "seed"),
    ({"topology.node_link.bandwidth_gbs": 0}, "topology.node_link.bandwidth_gbs"),
    ({"topology.node_link.latency_us": NAN}, "topology.node_link.latency_us"),
    ({"workload.arrival": {"process": "trace", "trace": "/etc/passwd"}}, "workload.arrival.trace"),
    ({"workload.arrival": {"process": "trace", "trace": "../../../../etc/shadow"}}, "workload.arrival.trace"),
    ({"workload.arrival": {"process": "trace", "trace": "azure_conv", "start_s": 1e9}}, "workload.arrival.start_s"),
    ({"workload.prompt_tokens": {"dist": "empirical", "trace": "/proc/self/environ"}},
     "workload.prompt_tokens.trace"),
    ({"workload.prompt_tokens": {"dist": "empirical", "trace": "azure_conv", "column": "secret"}},
     "workload.prompt_tokens.column"),
    ({"kv_cache.tiers": [{"id": "d", "bandwidth_gbs": 10, "scope": "client"}]}, "kv_cache.tiers[0].hit_rate"),
    ({"kv_cache.tiers": [{"id": "d", "bandwidth_gbs": INF, "scope": "client", "hit_rate": 0.5}]},
     "kv_cache.tiers[0].bandwidth_gbs"),
    ({"router": {"policy": "chaos"}}, "router.policy"),
    ({"clients[0].scheduler.batching": "External"}, "clients[0].scheduler.batching"),
    ({"clients[0].scheduler.batching": ["external"]}, "clients[0].scheduler.batching"),
    ({"clients[0].engine": {"preset": "vllm", "batching": "externall"}}, "clients[0].engine.batching"),
    ({"clients[0].engine": {"preset": "vllm", "quantised_kv": "fp8"}}, "clients[0].engine.quantised_kv"),
    ({"clients[0].engine": {"preset": "sglang", "kv_method": "static"}}, "clients[0].engine.kv_method"),
    ({"clients[0].engine": {"preset": "vllm", "allreduce": "nccl"}}, "clients[0].engine.allreduce"),
    ({"clients[0].engine": {"preset": "vllm", "allreduce": 1}}, "clients[0].engine.allreduce"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "comm_custom_us": -1}}, "clients[0].hardware.comm_custom_us"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "comm_graph_us": NAN}}, "clients[0].hardware.comm_graph_us"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "comm_graph_us": INF}}, "clients[0].hardware.comm_graph_us"),
    ({"clients[0].hardware": {"preset": "H100-SXM", "comm_custom_us": "5"}}, "clients[0].hardware.comm_custom_us"),
    ({"clients[0].model": {"preset": "Llama-3.1-8B", "embed_bytes_per_param": -1}},
     "clients[0].model.embed_bytes_per_param"),
    ({"no.such.field": 1}, "no"),
]


def _pipeline(stages):
    return {"pipelines": {"default": stages}}


def _bomb_includes(depth: int) -> dict:
    pipes = {"p0": [{"kind": "llm"}]}
    for i in range(1, depth):
        pipes[f"p{i}"] = [{"kind": "include", "pipeline": f"p{i - 1}"}] * 4
    pipes["default"] = [{"kind": "include", "pipeline": f"p{depth - 1}"}]
    return {"pipelines": pipes}


# (changes merged into BASE at the top level, field the error must name)
DOCS = [
    (_pipeline([{"kind": "llm"}, {"kind": "reasoning", "branches": 10**9}]), "pipelines.default[1].branches"),
    (_pipeline([{"kind": "llm"}, {"kind": "reasoning", "steps": 10**6, "tool": {"latency": 1}}]),
     "pipelines.default[1].steps"),
    (_pipeline([{"kind": "llm"}, {"kind": "reasoning", "thinking_tokens": 1e300}]),
     "pipelines.default[1].thinking_tokens.value"),
    (_pipeline([{"kind": "kv_retrieval", "prefix_tokens": "all"}, {"kind": "llm"}]),
     "pipelines.default[0].prefix_tokens"),
    (_pipeline([{"kind": "generic", "latency": {"dist": "fixed", "ms": INF}}, {"kind": "llm"}]),
     "pipelines.default[0].latency.ms"),
    (_pipeline([{"kind": "route", "rules": [{"model": "x", "prompt_tokens_gt": "big"}], "default": "x"},
                {"kind": "llm"}]), "pipelines.default[0].rules[0].prompt_tokens_gt"),
    (_pipeline([{"kind": "rag", "embed": {"model": "e5-base"}, "index": {"kind": "flat", "vectors": 1e300, "dim": 8},
                 }, {"kind": "llm"}]), "pipelines.default[0].index.vectors"),
    (_pipeline([{"kind": "rag", "embed": {"model": "e5-base"}, "index": {"kind": "flat", "vectors": 100, "dim": 8},
                 "rerank": {"model": "bge-reranker-large", "candidates": 10**9}}, {"kind": "llm"}]),
     "pipelines.default[0].rerank.candidates"),
    (_pipeline([{"kind": 7}]), "pipelines.default[0].kind"),
    (_bomb_includes(30), "pipelines"),
    ({"pipelines": {str(i): [{"kind": "llm"}] for i in range(300)}}, "pipelines"),
    ({"clients": [{"id": "a", "hardware": "H100-SXM", "model": "llama-3.1-8b", 1: 2}]}, "clients[0]"),
    ({"clients": []}, "clients"),
    ({"clients": "H100"}, "clients"),
    ({"workload": [1, 2]}, "workload"),
    ({"base_dir": "/"}, "workload.arrival.trace"),  # the document cannot widen file access
]

NESTED = "a: " + "[" * 50_000 + "]" * 50_000
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True))

# (YAML text, field the error must name)
TEXTS = [
    (LAUGHS, "e["),
    ("a: &x [*x]\n", "a[0]"),
    ("a: &x {b: *x}\n", "a.b"),
    (NESTED, "a" + "[0]" * 31),
    ("{" * 40 + "}" * 40, "spec"),
    ("name: !!binary aGVsbG8=\n", "name"),
    ("name: !!python/object/apply:os.system [ls]\n", "name"),
    ("seed: !!set {1, 2}\n", "seed"),
    ("name: 2024-01-01\n", "name"),
    ("name: !!timestamp 2024-01-01T00:00:00Z\n", "name"),
    ("a: 1\n---\nb: 2\n", "spec"),
    ("{[1, 2]: 3}\n", "spec"),
    ("- " * 10 + "x\n", "spec"),
    ("clients: [" + "1, " * 200_000 + "1]\n", "clients[49997]"),
    ("x" * (2 << 20), "spec"),
    ("seed: " + "9" * 5000 + "\n", "seed"),
    ("name: [unclosed\n", "spec"),
    ("\x00\x01\x02", "spec"),
]


def _bounded(fn):
    """Run fn, returning its exception; assert loose bounds on wall time, then (a second run) on memory.

    Two runs, because tracemalloc slows allocation-heavy code several times over.
    """
    t0 = time.perf_counter()
    err = _raised(fn)
    elapsed = time.perf_counter() - t0
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
    tracemalloc.start()
    try:
        _raised(fn)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_BYTES, f"allocated {peak / 2**20:.0f} MB"
    return err


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the caller checks the type
        return e
    return None


def _assert_spec_error(err, field):
    assert isinstance(err, SpecError), f"expected SpecError, got {type(err).__name__}: {err}"
    assert err.field.startswith(field), (err.field, err.reason)


@pytest.mark.parametrize(("overrides", "field"), OVERRIDES, ids=[str(f) for _, f in OVERRIDES])
def test_hostile_overrides_name_the_field(overrides, field):
    _assert_spec_error(_bounded(lambda: load_spec(copy.deepcopy(BASE), overrides)), field)


@pytest.mark.parametrize(("change", "field"), DOCS, ids=[f for _, f in DOCS])
def test_hostile_documents_name_the_field(change, field):
    doc = {**copy.deepcopy(BASE), **copy.deepcopy(change)}
    if field == "workload.arrival.trace":
        doc["workload"]["arrival"] = {"process": "trace", "trace": "etc/passwd"}
    _assert_spec_error(_bounded(lambda: load_spec(doc)), field)


@pytest.mark.slow
@pytest.mark.parametrize(("text", "field"), TEXTS, ids=[f"text{i}" for i in range(len(TEXTS))])
def test_hostile_yaml_is_refused_before_anything_else(text, field):
    _assert_spec_error(_bounded(lambda: load_spec(text if "\n" in text else text + "\n")), field)


def test_the_corpus_is_large():
    assert len(OVERRIDES) + len(DOCS) + len(TEXTS) >= 40


def test_yaml_limits_keep_valid_documents_identical_to_safe_load():
    import yaml

    text = ("base: &b {tp: 1, x: 0x10, y: 1_000, z: 1:30, w: .inf, v: ~, u: yes, t: '12', s: 1e3}\n"
            "c:\n  <<: *b\n  tp: 2\nlist: [1, 2.5, null, true, \"q\"]\n")
    assert repr(parse_yaml(text)) == repr(yaml.safe_load(text))


def test_dicts_from_the_wire_get_the_same_limits():
    deep: dict = {}
    node = deep
    for _ in range(100):
        node["a"] = {}
        node = node["a"]
    _assert_spec_error(_bounded(lambda: load_spec({**BASE, "x": deep})), "x.a.a")
    loop: dict = {}
    loop["self"] = loop
    _assert_spec_error(_bounded(lambda: load_spec({**BASE, "x": loop})), "x.self")
    _assert_spec_error(_bounded(lambda: load_spec({**BASE, "x": object()})), "x")


# ---------------------------------------------------------------- data files


def _trace_doc(name: str) -> dict:
    doc = copy.deepcopy(BASE)
    doc["workload"] = {"arrival": {"process": "trace", "trace": name}}
    return doc


def test_paths_need_a_data_dir_and_stay_inside_it(tmp_path):
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "ok.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n0.5,20,5\n")
    (tmp_path / "secret.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n")
    (inside / "link.csv").symlink_to(tmp_path / "secret.csv")
    assert isinstance(load_spec(_trace_doc("ok.csv"), data_dir=inside), SimSpec)
    assert isinstance(load_spec(_trace_doc(str(inside / "ok.csv")), data_dir=inside), SimSpec)
    with pytest.raises(SpecError, match="data directory"):
        load_spec(_trace_doc("ok.csv"))  # no data_dir: bundled traces only
    answers = set()
    for name in ("../secret.csv", str(tmp_path / "secret.csv"), "link.csv", "../nothing-here.csv",
                 "/nonexistent/x.csv"):
        with pytest.raises(SpecError) as e:
            load_spec(_trace_doc(name), data_dir=inside)
        assert e.value.field == "workload.arrival.trace"
        answers.add(e.value.reason.replace(show(name), "NAME"))
    assert len(answers) == 1, answers  # the same answer whether or not the outside file exists


def test_trace_errors_never_echo_the_file(tmp_path):
    (tmp_path / "env.csv").write_text("TOKEN=hunter2,OTHER=x\nmore,secret\n")
    (tmp_path / "rows.csv").write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,hunter2,5\n")
    for name in ("env.csv", "rows.csv"):
        with pytest.raises(SpecError) as e:
            load_spec(_trace_doc(name), data_dir=tmp_path)
        assert "hunter2" not in str(e.value) and "TOKEN" not in str(e.value)


def test_bundled_traces_need_no_data_dir():
    spec = load_spec(_trace_doc("azure_code"))
    assert spec.traces["workload.arrival.trace"].rows > 1000


# ---------------------------------------------------------------- impossible runs and memory


def test_a_run_where_every_request_is_dropped_says_so():
    doc = copy.deepcopy(BASE)
    doc["clients"][0]["scheduler"] = {"max_model_len": 64}
    sim = Simulation(load_spec(doc))
    sim.run()
    s = sim.summary()
    assert s["requests"]["completed"] == 0
    assert any("every request was dropped" in w and "exceeds_max_model_len" in w for w in s["warnings"])
    ok = Simulation(load_spec(copy.deepcopy(BASE)))
    ok.run()
    assert ok.summary()["warnings"] == []


def test_memory_estimate_names_the_dominant_field():
    small = estimate_memory_bytes(load_spec(copy.deepcopy(BASE)))
    many = estimate_memory_bytes(load_spec(copy.deepcopy(BASE), {"workload.num_requests": 10**8}))
    assert many.dominant_field == "workload.num_requests" and many.total_bytes > 100 * small.total_bytes
    users = estimate_memory_bytes(load_spec(copy.deepcopy(BASE), {
        "workload.arrival": {"process": "closed_loop", "users": 100_000}, "workload.num_requests": None,
        "workload.duration_s": 3600.0}))
    assert users.dominant_field == "workload.duration_s"
    clients = estimate_memory_bytes(load_spec(copy.deepcopy(BASE), {"clients[0].replicas": 1000,
                                                                    "workload.num_requests": 10}))
    assert clients.dominant_field == "clients"


@pytest.mark.parametrize("overrides", [
    {},
    {"workload.num_requests": 1500},
    {"clients[0].replicas": 50},
    {"workload.arrival": {"process": "closed_loop", "users": 1000}, "workload.num_requests": 1500},
    {"workload.arrival": {"process": "poisson", "rate": 1e6}, "workload.num_requests": 1500},
    {"workload.arrival": {"process": "trace", "trace": "azure_code"}, "clients[0].replicas": 4},
])
@pytest.mark.slow
def test_memory_estimate_bounds_what_a_run_allocates(overrides):
    spec = load_spec(copy.deepcopy(BASE), overrides)
    tracemalloc.start()
    sim = Simulation(spec, record_events=True)
    while not sim.is_done():
        sim.advance(max_events=20_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert estimate_memory_bytes(spec).total_bytes >= peak


# ---------------------------------------------------------------- random documents

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8)
_KEYS = ["name", "seed", "clients", "workload", "router", "pipelines", "limits", "kv_cache", "topology", "hardware",
         "model", "tp", "pp", "replicas", "role", "scheduler", "perf", "kind", "arrival", "process", "rate", "users",
         "prompt_tokens", "output_tokens", "num_requests", "duration_s", "dist", "value", "block_size", "tiers",
         "index", "trace", "policy", "prefix", "tokens", "groups", "id", "branches", "steps", "latency"]
_keys = st.sampled_from(_KEYS) | st.text(max_size=6)
_docs = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(_keys, c, max_size=5),
                     max_leaves=30)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _docs, max_size=6))
def test_random_documents_are_a_spec_or_a_spec_error(doc):
    try:
        assert isinstance(load_spec(doc), SimSpec)
    except SpecError:
        pass


_PATHS = ["name", "seed", "clients", "clients[0]", "clients[0].tp", "clients[0].hardware", "clients[0].model",
          "clients[0].scheduler", "clients[0].scheduler.block_size", "clients[0].perf", "clients[0].replicas",
          "workload", "workload.arrival", "workload.arrival.rate", "workload.arrival.process",
          "workload.prompt_tokens", "workload.output_tokens", "workload.num_requests", "workload.prefix",
          "workload.pipeline", "pipelines", "pipelines.default", "router", "limits", "kv_cache", "topology"]


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(_PATHS), _docs, min_size=1, max_size=3))
def test_random_overrides_of_a_valid_spec_are_a_spec_or_a_spec_error(overrides):
    try:
        spec = load_spec(copy.deepcopy(BASE), overrides)
    except SpecError:
        return
    Simulation(spec)  # a spec load_spec accepts builds without further errors
