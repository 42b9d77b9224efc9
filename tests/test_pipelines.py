"""Multi-stage pipelines: each stage against a hand-computed cost, conservation, contention, caches."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sim_engine import RequestInput, Simulation, SpecError, StopReason, load_spec
from sim_engine.vector_search import parse_index, search_time_s
from sim_engine.views import GROUP_CODES, KIND_CODES, STAGE_KINDS

INDEX = {"kind": "ivf_pq", "vectors": 10_000_000, "dim": 768, "centroids": 4096, "probes": 16, "pq_m": 96,
         "k": 10}


def base_spec(pipeline: list, extra_clients: list | None = None, **top) -> dict:
    doc = {
        "name": "p", "seed": 5,
        "clients": [
            {"id": "emb", "role": "embedding", "hardware": "A100-80GB", "model": "e5-base",
             "placement": {"node": "aux"}},
            {"id": "cpu", "role": "retrieval", "hardware": "Grace", "placement": {"node": "cpu"}},
            {"id": "pre", "role": "prefill", "hardware": "H100-SXM", "model": "Llama-3.1-8B",
             "placement": {"node": "g0"}},
            {"id": "dec", "role": "decode", "hardware": "H100-SXM", "model": "Llama-3.1-8B",
             "placement": {"node": "g1"}},
            {"id": "llm", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "placement": {"node": "g2"}},
            {"id": "tool", "role": "generic", "concurrency": 1},
        ] + (extra_clients or []),
        "topology": {"node_link": {"bandwidth_gbs": 10.0, "latency_us": 5.0}},
        "pipelines": {"p": pipeline},
        "router": "round_robin",
        "workload": {"arrival": {"process": "none"}, "pipeline": "p"},
    }
    doc.update(top)
    return doc


def one_request(doc: dict, prompt=500, output=20, **kw) -> Simulation:
    sim = Simulation(load_spec(doc), **kw)
    sim.inject([RequestInput(0, prompt, output, pipeline="p")])
    sim.advance()
    return sim


def stage_rows(sim: Simulation) -> dict[str, np.ndarray]:
    return sim.stage_records.arrays()


def test_search_embed_and_generic_stages_cost_what_their_models_say():
    sim = one_request(base_spec([
        {"kind": "rag", "embed": {"model": "e5-base"}, "index": INDEX, "docs": 4, "doc_tokens": 100},
        {"kind": "generic", "latency": 20},
        {"kind": "llm"},
    ]), prompt=300)
    st = stage_rows(sim)
    service = st["end_ns"] - st["start_ns"]
    emb = sim.client_by_id["emb"]
    assert service[0] == round(emb.perf.step([(0, 300)], 0, 0).time_s * 1e9)
    t_search, _, _ = search_time_s(parse_index(INDEX, "i"), sim.client_by_id["cpu"].spec.hardware, 1)
    assert service[1] == round(t_search * 1e9)
    assert service[2] == 20_000_000
    # the retrieved documents joined the prompt of the LLM stage
    assert sim.request_records()["prompt_tokens"][0] == 300 + 4 * 100
    # the query vector went from the embedding node to the CPU node: latency + bytes / bandwidth
    assert st["bytes_in"][1] == 768 * 4
    assert st["enqueue_ns"][1] - st["ready_ns"][1] == 10_000 + int(np.ceil(768 * 4 / 10e9 * 1e9))


def test_disaggregated_kv_transfer_moves_the_kv_bytes():
    sim = one_request(base_spec([{"kind": "prefill"}, {"kind": "decode"}]), prompt=1000, output=30)
    st = stage_rows(sim)
    kv_per_token = sim.client_by_id["pre"].spec.model.kv_bytes_per_token()
    assert st["bytes_in"][1] == 1000 * kv_per_token
    assert st["enqueue_ns"][1] - st["ready_ns"][1] == 10_000 + int(np.ceil(1000 * kv_per_token / 10e9 * 1e9))
    assert list(st["client"]) == [sim.client_by_id["pre"].index, sim.client_by_id["dec"].index]
    links = sim.summary()["links"]
    assert links["nic:g0"]["bytes_moved"] == pytest.approx(1000 * kv_per_token)
    assert sim.request_records()["output_tokens"][0] == 30
    layerwise = one_request(base_spec([{"kind": "prefill"}, {"kind": "decode", "kv_transfer": "layerwise"}]),
                            prompt=1000, output=30)
    assert stage_rows(layerwise)["bytes_in"][1] == -(-1000 * kv_per_token // 32)


def test_two_transfers_on_one_link_take_longer_than_one():
    doc = base_spec([{"kind": "prefill"}, {"kind": "decode"}])
    doc["clients"] = [c for c in doc["clients"] if c["id"] != "llm"]  # one prefill and one decode client
    alone = one_request(doc, prompt=1000)
    st = stage_rows(alone)
    t_alone = st["enqueue_ns"][1] - st["ready_ns"][1]
    two = Simulation(load_spec(doc))
    two.inject([RequestInput(0, 1000, 5, pipeline="p"), RequestInput(0, 1000, 5, pipeline="p")])
    two.advance()
    st2 = stage_rows(two)
    decode_rows = st2["stage"] == 1
    waits = st2["enqueue_ns"][decode_rows] - st2["ready_ns"][decode_rows]
    assert waits.max() > t_alone


def test_every_stage_runs_once_and_bytes_match_links():
    doc = base_spec([
        {"kind": "rag", "embed": {"model": "e5-base"}, "index": INDEX, "docs": 2, "doc_tokens": 64},
        {"kind": "prefill"}, {"kind": "decode"},
        {"kind": "reasoning", "thinking_multiplier": 1.0, "branches": 3, "first_k": 2},
        {"kind": "generic", "latency": {"dist": "lognormal", "mean_ms": 5, "sigma": 0.5}},
    ])
    doc["workload"] = {"arrival": {"process": "poisson", "rate": 5.0}, "num_requests": 40, "pipeline": "p",
                       "prompt_tokens": {"dist": "uniform", "low": 100, "high": 800},
                       "output_tokens": {"dist": "uniform", "low": 5, "high": 60}}
    sim = Simulation(load_spec(doc))
    sim.run()
    s = sim.summary()
    assert s["requests"]["completed"] == 40
    st = stage_rows(sim)
    n_stages = len(sim.spec.pipelines["p"])
    counts = np.bincount(st["idx"], minlength=40)
    assert (counts == n_stages).all()
    for i in range(40):
        assert sorted(st["stage"][st["idx"] == i].tolist()) == list(range(n_stages))
    # every byte a stage received crossed the network: sum over the first link of each path
    moved = sum(v["bytes_moved"] for k, v in s["links"].items() if k.startswith("nic:"))
    assert moved == pytest.approx(2 * st["bytes_in"].sum(), rel=1e-9)  # each path crosses two NICs
    assert set(s["stages"]) == {"rag", "prefill", "reasoning", "generic"}  # the decode is shaped by reasoning


def test_reasoning_branches_and_first_k():
    def run(first_k):
        doc = base_spec([{"kind": "llm"}, {"kind": "reasoning", "thinking_multiplier": 3.0, "branches": 4,
                                           "first_k": first_k}])
        return one_request(doc, prompt=200, output=50)

    all4, first1 = run(4), run(1)
    c = all4.client_by_id["llm"]
    # 4 branches each produce the thinking and answer tokens: 50 * (1 + 3) - the shared first token
    assert c.generation_tokens_total == 1 + 4 * (200 - 1)
    assert all4.request_records()["output_tokens"][0] == 200
    # all branches run in lockstep here, so stopping at the first one saves nothing but the KV blocks
    assert first1.request_records()["finish_ns"][0] <= all4.request_records()["finish_ns"][0]
    assert c.used_blocks == 0 and first1.client_by_id["llm"].used_blocks == 0


def test_route_stage_picks_models_by_rules():
    extra = [{"id": "big", "hardware": "H100-SXM", "model": "Llama-3.1-70B", "tp": 4}]
    doc = base_spec([{"kind": "route", "rules": [{"prompt_tokens_gt": 1000, "model": "Llama-3.1-70B"}],
                      "default": "Llama-3.1-8B"}, {"kind": "llm"}], extra)
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(0, 2000, 5, pipeline="p"), RequestInput(0, 200, 5, pipeline="p")])
    sim.advance()
    r = sim.request_records()
    by_prompt = dict(zip(r["prompt_tokens"].tolist(), r["client"].tolist(), strict=True))
    assert sim.clients[by_prompt[2000]].id == "big"
    assert sim.clients[by_prompt[200]].id == "llm"


KV_TIERS = [{"id": "dram", "capacity_gb": 1.0, "bandwidth_gbs": 100.0, "latency_us": 10, "scope": "client"},
            {"id": "pool", "bandwidth_gbs": 5.0, "latency_us": 100, "scope": "rack"}]


def kv_doc(mode: str, tiers=None, groups=1, prefix=2000) -> dict:
    doc = base_spec([{"kind": "kv_retrieval"}, {"kind": "llm"}])
    doc["kv_cache"] = {"mode": mode, "tiers": tiers or KV_TIERS}
    doc["workload"]["prefix"] = {"tokens": prefix, "groups": groups}
    return doc


def test_lru_cache_hits_a_repeated_prefix_and_skips_its_prefill():
    sim = Simulation(load_spec(kv_doc("lru")))
    sim.inject([RequestInput(0, 3000, 5, pipeline="p")])
    sim.advance()
    sim.inject([RequestInput(sim.now_ns + 1, 3000, 5, pipeline="p")])
    sim.advance()
    stats = sim.summary()["kv_cache"]
    assert stats["dram"]["hits"] == 1
    st = stage_rows(sim)
    kv_rows = st["group"] == GROUP_CODES["kv_retrieval"]
    kvb = sim.client_by_id["llm"].spec.model.kv_bytes_per_token()
    assert st["bytes_in"][kv_rows].tolist() == [0, 2000 * kvb]
    r = sim.request_records()
    ttft = r["first_token_ns"] - r["arrival_ns"]
    assert ttft[1] < ttft[0]  # the second request prefilled only 1000 of its 3000 tokens
    assert sim.client_by_id["llm"].prompt_tokens_total == 3000 + 1000


def test_lru_evicts_under_capacity_pressure():
    tiers = [dict(KV_TIERS[0], capacity_gb=0.3)]  # one 2000-token prefix of Llama-8B is 0.26 GB
    sim = Simulation(load_spec(kv_doc("lru", tiers=tiers, groups=0)))
    t = 0
    for _ in range(3):
        sim.inject([RequestInput(t, 3000, 2, pipeline="p")])
        sim.advance()
        t = sim.now_ns + 1
    assert sim.summary()["kv_cache"]["dram"]["evictions"] == 2


def test_rates_mode_hit_rates_emerge_from_the_given_probabilities():
    tiers = [dict(KV_TIERS[0], hit_rate=0.5), dict(KV_TIERS[1], hit_rate=1.0)]
    doc = kv_doc("rates", tiers=tiers, groups=0, prefix=500)
    doc["workload"] = {"arrival": {"process": "poisson", "rate": 20.0}, "num_requests": 200, "pipeline": "p",
                       "prompt_tokens": 1000, "output_tokens": 2, "prefix": {"tokens": 500}}
    sim = Simulation(load_spec(doc))
    sim.run()
    kv = sim.summary()["kv_cache"]
    assert kv["dram"]["lookups"] == 200
    assert 0.4 < kv["dram"]["hits"] / 200 < 0.6
    assert kv["pool"]["hits"] == 200 - kv["dram"]["hits"]


def test_external_router_is_asked_for_every_stage_kind():
    extra = [{"id": "rr", "role": "embedding", "hardware": "A100-80GB", "model": "bge-reranker-large"}]
    doc = base_spec([
        {"kind": "rag", "embed": {"model": "e5-base"}, "index": INDEX, "rerank": {"model": "bge-reranker-large"}},
        {"kind": "route", "probabilities": {"Llama-3.1-8B": 1.0}},
        {"kind": "kv_retrieval"}, {"kind": "prefill"}, {"kind": "decode"},
        {"kind": "generic", "latency": 1},
    ], extra, router="external")
    doc["kv_cache"] = {"mode": "lru", "tiers": KV_TIERS}
    doc["workload"]["prefix"] = {"tokens": 100}
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(0, 400, 4, pipeline="p")])
    asked = []
    while True:
        r = sim.advance()
        if r.reason is not StopReason.DECISION_NEEDED:
            break
        for d in sim.pending_decisions():
            asked.append(d.stage_kind)
            sim.decide(d.decision_id, "route", d.candidates[0])
    # kv_retrieval picks the LLM client; the prefill after it stays there
    assert asked == ["embed", "search", "rerank", "route", "kv_retrieval", "decode", "generic"]
    assert sim.summary()["requests"]["completed"] == 1


@pytest.mark.parametrize(("pipelines", "field", "message"), [
    ({"p": [{"kind": "teleport"}]}, "pipelines.p[0].kind", "unknown stage"),
    ({"p": [{"kind": "llm"}, {"kind": "generic", "latency": 1}]}, "pipelines.p[1]", "no client"),
    ({"p": [{"kind": "include", "pipeline": "q"}], "q": [{"kind": "include", "pipeline": "p"}]},
     "pipelines.q[0].pipeline", "cycle"),
    ({"p": [{"kind": "prefill"}, {"kind": "llm"}]}, "pipelines.p[0]", "followed by a decode"),
    ({"p": [{"kind": "rag", "embed": {"model": "e5-large"}, "index": INDEX}, {"kind": "llm"}]},
     "pipelines.p[0]", "no client"),
])
def test_bad_pipelines_are_rejected_naming_the_field(pipelines, field, message):
    doc = base_spec([{"kind": "llm"}])
    doc["clients"] = [c for c in doc["clients"] if c["id"] != "tool"]
    doc["pipelines"] = copy.deepcopy(pipelines)
    with pytest.raises(SpecError, match=message) as e:
        load_spec(doc)
    assert e.value.field.startswith(field)


def test_rag_parts_are_reported_apart_and_long_queries_are_truncated_by_the_encoder():
    sim = one_request(base_spec([{"kind": "rag", "embed": {"model": "e5-base"}, "index": INDEX},
                                 {"kind": "llm"}]), prompt=3000)
    parts = sim.summary()["stages"]["rag"]["parts"]
    assert set(parts) == {"embed", "search"}
    emb = sim.client_by_id["emb"]
    assert parts["embed"]["service_s"]["max"] == pytest.approx(
        round(emb.perf.step([(0, 512)], 0, 0).time_s * 1e9) / 1e9)  # e5-base reads at most 512 tokens


def test_an_index_larger_than_every_retrieval_host_is_rejected():
    big = dict(INDEX, vectors=20_000_000_000, centroids=4_000_000, pq_m=64)
    with pytest.raises(SpecError, match="no retrieval client has that much memory") as e:
        load_spec(base_spec([{"kind": "rag", "embed": {"model": "e5-base"}, "index": big}, {"kind": "llm"}]))
    assert e.value.field == "pipelines.p[1].index"


def test_injected_prefix_keys_reach_the_cache_and_the_external_router():
    doc = kv_doc("lru")
    doc["router"] = {"policy": "external"}
    sim = Simulation(load_spec(doc))
    sim.inject([RequestInput(0, 3000, 2, pipeline="p", prefix_key="doc-7")])
    seen = []
    while sim.advance().reason is StopReason.DECISION_NEEDED:
        for d in sim.pending_decisions():
            seen.append(d.prefix_key)
            sim.decide(d.decision_id, "route", "llm")
    assert seen == ["doc-7"]  # kv_retrieval is asked; the llm stage stays on the chosen client
    sim.inject([RequestInput(sim.now_ns, 3000, 2, pipeline="p", prefix_key="doc-7")])
    while sim.advance().reason is StopReason.DECISION_NEEDED:
        for d in sim.pending_decisions():
            sim.decide(d.decision_id, "route", "llm")
    assert sim.summary()["kv_cache"]["dram"]["hits"] == 1


def test_spec_errors_survive_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(SpecError("clients[0].tp", "bad")))
    assert (e.field, e.reason, str(e)) == ("clients[0].tp", "bad", "clients[0].tp: bad")


def test_multi_step_reasoning_loop_grows_the_context_and_reuses_it():
    doc = base_spec([{"kind": "llm"}, {"kind": "reasoning", "thinking_multiplier": 2.0, "steps": 3,
                                       "tool": {"latency": 50, "tokens": 100}}])
    sim = one_request(doc, prompt=400, output=30)
    st = stage_rows(sim)
    kinds = [STAGE_KINDS[k] for k in st["kind"]]
    assert kinds == ["llm", "generic", "llm", "generic", "llm"]
    assert set(st["group"].tolist()) == {GROUP_CODES["reasoning"], GROUP_CODES["generic"]}
    tools = st["kind"] == KIND_CODES["generic"]
    assert ((st["end_ns"] - st["start_ns"])[tools] == 50_000_000).all()
    llm = sim.client_by_id["llm"]
    assert set(st["client"][~tools].tolist()) == {llm.index}  # every thinking step on one client
    r = sim.request_records()
    assert r["output_tokens"][0] == 30 + 60  # the answer and all thinking tokens
    assert r["prompt_tokens"][0] == 400 + 2 * 100  # the tools' outputs joined the context
    # only the prompt, then each tool's output plus the last thinking token, were prefilled
    assert llm.prompt_tokens_total == 400 + 2 * (100 + 1)
    assert llm.used_blocks == 0


def test_loops_reject_branches():
    doc = base_spec([{"kind": "llm"}, {"kind": "reasoning", "branches": 2, "steps": 2,
                                       "tool": {"latency": 1}}])
    with pytest.raises(SpecError, match="one branch") as e:
        load_spec(doc)
    assert e.value.field == "pipelines.p[1].steps"
