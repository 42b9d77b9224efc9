"""The GPU prefix cache: LRU runs of freed blocks, and what the scheduler does with them.

A preempted request finds its own blocks again, requests of one prefix group share their
prefix's blocks, eviction frees cached blocks under pressure (oldest first, no deadlock),
the summary reports the hit rate, and with the cache off nothing is looked up.
"""

from __future__ import annotations

import pytest

from sim_engine import RequestInput, Simulation, load_spec
from sim_engine.engines import PROFILES, get_engine
from sim_engine.prefix_cache import PrefixCache


def test_runs_merge_take_and_evict_oldest_first_from_the_tail():
    c = PrefixCache()
    c.put("a", 0, 4)
    c.put("b", 2, 5)
    c.put("x", 3, 3)  # nothing full: nothing cached
    assert c.blocks == 7 and list(c.runs) == ["a", "b"]
    assert c.peek("a", 0, 10) == 4 and c.peek("a", 0, 3) == 3 and c.peek("b", 0, 10) == 0
    assert c.peek("b", 2, 10) == 5 and c.peek("zz", 0, 10) == 0
    c.put("a", 4, 6)  # touches the cached run: merged, and now the most recent
    assert c.runs["a"] == [0, 6] and c.blocks == 9 and list(c.runs) == ["b", "a"]
    c.put("a", 0, 6)  # the same content again: the duplicates are plain free memory
    assert c.blocks == 9
    c.evict(2)  # the oldest run loses its tail first
    assert c.runs["b"] == [2, 3] and c.blocks == 7
    c.evict(2)
    assert "b" not in c.runs and c.runs["a"] == [0, 5] and c.blocks == 5
    c.take("a", 0, 3)
    assert c.runs["a"] == [3, 5] and c.blocks == 2 and c.peek("a", 0, 10) == 0
    c.put("a", 0, 1)  # disjoint from the cached run: the older one is dropped
    assert c.runs["a"] == [0, 1] and c.blocks == 1
    c.take("a", 0, 1)
    assert not c.runs and c.blocks == 0


def test_profiles_turn_it_on_for_vllm_v1_and_sglang_only():
    assert {n for n, p in PROFILES.items() if p.prefix_caching} == {"vllm", "sglang"}
    assert not get_engine({"preset": "vllm", "prefix_caching": False}).prefix_caching
    assert get_engine({"preset": "trtllm", "prefix_caching": True}).prefix_caching


def _sim(blocks: int, caching: bool, engine: str = "vllm", prefix: int = 0, batching: str = "chunked",
         budget: int = 8192) -> Simulation:
    doc = {
        "name": "pc", "seed": 1,
        "clients": [{"id": "c", "hardware": "H100-SXM", "model": "Llama-3.1-8B", "engine": engine,
                     "scheduler": {"batching": batching, "block_size": 16, "prefix_caching": caching,
                                   "max_num_batched_tokens": budget}}],
        "workload": {"arrival": {"process": "none"}, **({"prefix": {"tokens": prefix}} if prefix else {})},
    }
    sim = Simulation(load_spec(doc))
    sim.clients[0].total_blocks = blocks
    return sim


def _run(sim: Simulation, reqs: list[RequestInput]) -> Simulation:
    sim.inject(reqs)
    sim.advance()
    assert sim.is_done() and sim.completed == len(reqs)
    return sim


@pytest.mark.parametrize("batching", ["continuous", "chunked"])
def test_a_preempted_request_recomputes_less_with_its_blocks_cached(batching):
    reqs = [RequestInput(0, 200, 150) for _ in range(4)]
    plain = _run(_sim(40, False, batching=batching), reqs).clients[0]
    cached = _run(_sim(40, True, batching=batching), reqs).clients[0]
    assert plain.preemptions_total > 0 and cached.preemptions_total > 0
    assert plain.prefix_queries == plain.prefix_hits == 0
    assert cached.prefix_hits > 0
    # the same tokens come out, with fewer prompt tokens computed
    assert plain.generation_tokens_total == cached.generation_tokens_total == 4 * 150
    assert cached.prompt_tokens_total < plain.prompt_tokens_total
    # what was not recomputed is what hit: the cached run asks the same prompts plus recomputes
    assert cached.prompt_tokens_total + cached.prefix_hits == cached.prefix_queries


def test_requests_of_one_prefix_group_share_its_blocks_and_others_do_not():
    ms = 10**9  # one request after the other: the first has ended when the next arrives
    shared = [RequestInput(i * ms, 600, 10, prefix_key="doc") for i in range(3)]
    sim = _run(_sim(4000, True, prefix=512), shared)
    c = sim.clients[0]
    assert c.prefix_hits == 2 * 512  # the 32 prefix blocks, for the 2nd and 3rd request
    assert c.prompt_tokens_total == 3 * 600 - 2 * 512
    assert sim.summary()["clients"][0]["prefix_cache_hit_rate"] == pytest.approx(1024 / 1800)
    distinct = [RequestInput(i * ms, 600, 10, prefix_key=f"doc{i}") for i in range(3)]
    c = _run(_sim(4000, True, prefix=512), distinct).clients[0]
    assert c.prefix_hits == 0 and c.prompt_tokens_total == 3 * 600
    off = _run(_sim(4000, False, prefix=512), shared)
    assert off.clients[0].prompt_tokens_total == 3 * 600
    assert off.summary()["clients"][0]["prefix_cache_hit_rate"] == 0.0


def test_a_whole_prompt_hit_still_computes_its_last_block():
    ms = 10**9
    reqs = [RequestInput(i * ms, 512, 5, prefix_key="doc") for i in range(2)]
    c = _run(_sim(4000, True, prefix=511), reqs).clients[0]
    assert c.prefix_hits == 496 and c.prompt_tokens_total == 512 + 16  # 31 of 32 blocks: the last one holds the token


def test_eviction_frees_cached_blocks_under_pressure_oldest_first():
    ms = 10**9
    # a fills 20 of 40 blocks and ends; b (each its own prefix) needs 30: it evicts 10 of a's cached blocks
    # (its prefix run loses its tail), so c, of a's group, finds only the first 10 prefix blocks
    reqs = [RequestInput(0, 320, 1, prefix_key="a"), RequestInput(ms, 480, 1, prefix_key="b"),
            RequestInput(2 * ms, 320, 1, prefix_key="a")]
    sim = _run(_sim(40, True, prefix=319), reqs)
    c = sim.clients[0]
    assert c.prefix_hits == 0 + 0 + 10 * 16
    assert c.used_blocks == 0 and c.cache.blocks <= c.total_blocks


def test_a_full_cache_never_blocks_admission():
    ms = 10**8
    reqs = [RequestInput(i * ms, 300, 20, prefix_key=f"k{i}") for i in range(30)]
    sim = _run(_sim(30, True, prefix=256), reqs)
    c = sim.clients[0]
    assert c.prefix_hits == 0 and c.cache.blocks > 0
    assert c.used_blocks + c.cache.blocks <= c.total_blocks


def test_running_requests_of_one_group_share_the_prefix_blocks_once():
    ms = 10**6
    # b and c arrive while a (whose prefill is done) still decodes: they use a's 32 prefix blocks
    reqs = [RequestInput(0, 600, 200, prefix_key="doc"), RequestInput(300 * ms, 600, 200, prefix_key="doc"),
            RequestInput(310 * ms, 600, 200, prefix_key="doc")]
    shared = _sim(4000, True, prefix=512)
    shared.inject(reqs)
    shared.advance(until_ns=400 * ms)
    c = shared.clients[0]
    assert c.sharing == {"doc": [3, 32]} and c.prefix_hits == 2 * 512
    held = sum(-(-(s.base + c.G) // 16) - s.shared for s in c.decoding.values())
    assert c.used_blocks == held + 32
    shared.advance()
    assert shared.is_done() and shared.completed == 3
    assert c.sharing == {} and c.cache.runs[("p", "doc")] == [0, 32]  # cached when the last holder ended
    plain = _run(_sim(4000, False, prefix=512), reqs).clients[0]
    assert c.kv_peak <= plain.kv_peak - 2 * 32
    assert c.generation_tokens_total == plain.generation_tokens_total == 600
