"""KV hierarchy: conditional hit rates, LRU contents, scope sharing, capacity, validation."""

from __future__ import annotations

import numpy as np
import pytest

from sim_engine.errors import SpecError
from sim_engine.kv_tiers import KVHierarchy, TierSpec, parse_tiers

GB = 1_000_000_000

PAPER = [  # the MIST example hierarchy: DRAM then SSD
    {"id": "dram", "capacity_gb": 1500, "bandwidth_gbs": 256, "latency_us": 20, "scope": "client", "hit_rate": 0.4},
    {"id": "ssd", "capacity_gb": 6000, "bandwidth_gbs": 32, "latency_us": 100, "scope": "rack", "hit_rate": 0.8},
]


def keys(client: str, node: str = "n0", rack: str = "r0") -> dict[str, str]:
    return {"client": client, "node": node, "rack": rack, "global": "g"}


@pytest.mark.slow
def test_rates_mode_converges_to_conditional_rates_and_is_deterministic():
    def draw(seed: int) -> tuple[list[tuple[str | None, str | None]], dict]:
        h = KVHierarchy(parse_tiers(PAPER), "rates", np.random.default_rng(seed))
        return [h.lookup(keys(f"c{i % 4}"), f"p{i}", 10) for i in range(40_000)], h.stats()

    res, st = draw(7)
    n = len(res)
    dram = sum(1 for t, _ in res if t == "dram") / n
    ssd = sum(1 for t, _ in res if t == "ssd") / n
    miss = sum(1 for t, _ in res if t is None) / n
    assert dram == pytest.approx(0.4, abs=0.01)
    assert ssd == pytest.approx(0.6 * 0.8, abs=0.01)
    assert miss == pytest.approx(0.6 * 0.2, abs=0.01)
    assert st["ssd"]["hits"] / st["ssd"]["lookups"] == pytest.approx(0.8, abs=0.01)
    assert st["dram"]["lookups"] == n
    assert ("dram", "c1") in res and ("ssd", "r0") in res  # the requester's instances
    assert draw(7) == (res, st)
    assert draw(8)[0] != res


def test_rates_mode_stores_nothing_and_needs_rates():
    h = KVHierarchy(parse_tiers(PAPER), "rates", np.random.default_rng(0))
    assert h.insert(keys("c0"), "p", 10) == []
    no_rate = [{k: v for k, v in PAPER[0].items() if k != "hit_rate"}]
    with pytest.raises(SpecError) as err:
        KVHierarchy(parse_tiers(no_rate), "rates", np.random.default_rng(0))
    assert err.value.field == "kv_tiers[0].hit_rate"
    KVHierarchy(parse_tiers(no_rate), "lru", np.random.default_rng(0))  # lru ignores rates
    with pytest.raises(SpecError):
        KVHierarchy(parse_tiers(PAPER), "fifo", np.random.default_rng(0))


def lru(tiers: list[dict]) -> KVHierarchy:
    return KVHierarchy(parse_tiers(tiers), "lru", np.random.default_rng(0))


def test_lru_repeated_prefix_hits():
    h = lru(PAPER)
    assert h.lookup(keys("c0"), "doc", 5 * GB) == (None, None)
    assert h.insert(keys("c0"), "doc", 5 * GB) == []
    assert h.lookup(keys("c0"), "doc", 5 * GB) == ("dram", "c0")
    assert h.lookup(keys("c0"), "doc", 6 * GB) == (None, None)  # the prefix grew: stored part too short
    st = h.stats()
    assert st["dram"]["hits"] == 1 and st["dram"]["lookups"] == 3
    assert st["dram"]["bytes_stored"] == 5 * GB and st["ssd"]["bytes_stored"] == 5 * GB


def test_lru_capacity_pressure_evicts_least_recently_used():
    h = lru([{"id": "hbm", "capacity_gb": 3, "bandwidth_gbs": 100, "latency_us": 1, "scope": "client"}])
    k = keys("c0")
    for p in ("a", "b", "c"):
        assert h.insert(k, p, GB) == []
    assert h.lookup(k, "a", GB) == ("hbm", "c0")  # refresh a: b is now the LRU entry
    assert h.insert(k, "d", GB) == [("hbm", "b")]
    assert h.insert(k, "e", 2 * GB) == [("hbm", "c"), ("hbm", "a")]
    assert [h.lookup(k, p, GB)[0] for p in "abcde"] == [None, None, None, "hbm", "hbm"]
    st = h.stats()["hbm"]
    assert st["evictions"] == 3 and st["bytes_stored"] == 3 * GB
    # re-inserting an existing key replaces it, never double-counts
    h.insert(k, "e", 2 * GB)
    assert h.stats()["hbm"]["bytes_stored"] == 3 * GB


def test_client_scope_private_rack_scope_shared():
    tiers = [
        {"id": "local", "capacity_gb": 100, "bandwidth_gbs": 128, "latency_us": 1, "scope": "client"},
        {"id": "rack", "capacity_gb": 1000, "bandwidth_gbs": 2, "latency_us": 50, "scope": "rack"},
    ]
    h = lru(tiers)
    h.insert(keys("c0", rack="r0"), "doc", GB)
    assert h.lookup(keys("c0", rack="r0"), "doc", GB) == ("local", "c0")
    assert h.lookup(keys("c1", rack="r0"), "doc", GB) == ("rack", "r0")  # same rack, other client
    assert h.lookup(keys("c2", rack="r1"), "doc", GB) == (None, None)  # other rack
    assert h.stats()["local"]["instances"] == 1


def test_entry_bigger_than_tier_is_not_stored_there():
    tiers = [
        {"id": "small", "capacity_gb": 1, "bandwidth_gbs": 100, "latency_us": 1, "scope": "node"},
        {"id": "big", "capacity_gb": None, "bandwidth_gbs": 1, "latency_us": 100, "scope": "global"},
    ]
    h = lru(tiers)
    h.insert(keys("c0"), "small-doc", GB // 2)
    assert h.insert(keys("c0"), "huge", 2 * GB) == []  # does not flush "small" to make room
    assert h.lookup(keys("c0"), "huge", 2 * GB) == ("big", "g")
    assert h.lookup(keys("c0"), "small-doc", GB // 2) == ("small", "n0")
    assert h.stats()["big"]["bytes_stored"] == 2 * GB + GB // 2


def test_missing_scope_key():
    h = lru(PAPER)
    with pytest.raises(ValueError):
        h.lookup({"client": "c0"}, "p", 1)  # the rack tier needs a rack key
    g = lru([{"id": "g", "bandwidth_gbs": 1, "scope": "global"}])
    assert g.insert({}, "p", 1) == [] and g.lookup({}, "p", 1) == ("g", "global")


def test_parse_keeps_order_and_defaults():
    tiers = parse_tiers([{"id": "x", "bandwidth_gbs": 5, "scope": "node"}, *PAPER])
    assert [t.id for t in tiers] == ["x", "dram", "ssd"]
    assert tiers[0] == TierSpec("x", None, 5.0, 0.0, "node", None)
    assert tiers[1] == TierSpec("dram", 1500.0, 256.0, 20.0, "client", 0.4)


@pytest.mark.parametrize("doc,field", [
    ({"tiers": []}, "kv_tiers"),
    ([5], "kv_tiers[0]"),
    ([{"bandwidth_gbs": 1, "scope": "node"}], "kv_tiers[0].id"),
    ([PAPER[0], PAPER[0]], "kv_tiers[1].id"),
    ([{**PAPER[0], "capacity_gb": -1}], "kv_tiers[0].capacity_gb"),
    ([{**PAPER[0], "bandwidth_gbs": 0}], "kv_tiers[0].bandwidth_gbs"),
    ([{**PAPER[0], "bandwidth_gbs": "fast"}], "kv_tiers[0].bandwidth_gbs"),
    ([{**PAPER[0], "latency_us": -2}], "kv_tiers[0].latency_us"),
    ([{**PAPER[0], "scope": "pod"}], "kv_tiers[0].scope"),
    ([PAPER[0], {**PAPER[1], "hit_rate": 1.5}], "kv_tiers[1].hit_rate"),
    ([{**PAPER[0], "size": 3}], "kv_tiers[0].size"),
])
def test_bad_tiers_name_the_field(doc, field):
    with pytest.raises(SpecError) as err:
        parse_tiers(doc)
    assert err.value.field == field


def test_parse_field_prefix():
    with pytest.raises(SpecError) as err:
        parse_tiers([{**PAPER[0], "scope": "x"}], field="cluster.kv_tiers")
    assert err.value.field == "cluster.kv_tiers[0].scope"
