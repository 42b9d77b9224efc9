"""Vector-search cost models: hand-computed rooflines, monotonicity, batching, validation."""

from __future__ import annotations

import dataclasses

import pytest

from sim_engine.errors import SpecError
from sim_engine.hardware import HARDWARE
from sim_engine.vector_search import IndexSpec, index_bytes, parse_index, search_time_s

# A toy device: 1 MFLOP/s and 1 MB/s peak, both at 50% efficiency -> 5e5 flop/s, 5e5 B/s.
TOY = dataclasses.replace(HARDWARE["Grace"], tflops={"fp32": 1e-6}, mem_bw_gbs=1e-3,
                          compute_eff=0.5, mem_eff=0.5)

IVF = {"kind": "ivf_pq", "vectors": 10_000_000, "dim": 768, "centroids": 65_536, "probes": 16,
       "pq_m": 64, "k": 10}


def test_flat_hand_computed():
    ix = parse_index({"kind": "flat", "vectors": 1000, "dim": 4, "k": 5}, "rag.index")
    t, c, m = search_time_s(ix, TOY, 2)
    flops = 2 * 1000 * (2 * 4 + 1)  # 18,000
    nbytes = 1000 * 4 * 4 + 2 * 4 * 4  # 16,032: the set once per batch + the queries
    assert c == pytest.approx(flops / 5e5)
    assert m == pytest.approx(nbytes / 5e5)
    assert t == pytest.approx(max(c, m))
    assert index_bytes(ix) == 16_000


def test_flat_set_is_read_once_per_batch():
    ix = IndexSpec("flat", vectors=1_000_000, dim=128)
    dev = HARDWARE["Sapphire-Rapids"]
    _, _, m1 = search_time_s(ix, dev, 1)
    _, _, m8 = search_time_s(ix, dev, 8)
    assert m8 < 1.01 * m1


def test_ivf_pq_hand_computed_phases():
    ix = parse_index({"kind": "ivf_pq", "vectors": 1000, "dim": 8, "centroids": 10, "probes": 2,
                      "pq_m": 4, "k": 3}, "i")
    b = 3
    scanned = 2 * 1000 / 10
    phases = [
        (b * 2 * 8 * 10, 10 * 8 * 4 + b * 8 * 4),
        (b * 2 * 256 * 2 * 8, 256 * 8 * 4),
        (b * scanned * (4 + 1), b * scanned * 4 + b * 3 * 8),
    ]
    t, c, m = search_time_s(ix, TOY, b)
    assert c == pytest.approx(sum(f for f, _ in phases) / 5e5)
    assert m == pytest.approx(sum(x for _, x in phases) / 5e5)
    assert t == pytest.approx(sum(max(f, x) for f, x in phases) / 5e5)
    assert index_bytes(ix) == 10 * 8 * 4 + 1000 * (4 + 8) + 256 * 8 * 4


def test_ivf_more_probes_is_slower():
    dev = HARDWARE["Grace"]
    times = [search_time_s(parse_index({**IVF, "probes": p}, "i"), dev, 4)[0] for p in (1, 8, 32, 128)]
    assert times == sorted(times) and times[0] < times[-1]


def test_batching_amortises_the_centroid_read():
    ix = parse_index({**IVF, "centroids": 1_000_000, "probes": 4}, "i")
    dev = HARDWARE["Grace"]
    per_query = [search_time_s(ix, dev, b)[0] / b for b in (1, 4, 16)]
    assert per_query[0] > per_query[1] > per_query[2]


@pytest.mark.parametrize("doc", [
    {"kind": "flat", "vectors": 2_000_000, "dim": 768},
    IVF,
    {"kind": "hnsw", "vectors": 10_000_000, "dim": 768, "ef_search": 128},
])
def test_grace_is_faster_than_sapphire_rapids(doc):
    ix = parse_index(doc, "i")
    for b in (1, 32):
        assert search_time_s(ix, HARDWARE["Grace"], b)[0] < search_time_s(ix, HARDWARE["Sapphire-Rapids"], b)[0]


def test_hnsw_scales_with_ef_and_log_n():
    dev = HARDWARE["Genoa"]
    base = {"kind": "hnsw", "vectors": 1_000_000, "dim": 256, "k": 10}
    t_ef = [search_time_s(parse_index({**base, "ef_search": ef}, "i"), dev, 1)[0] for ef in (16, 64, 256)]
    assert t_ef[0] < t_ef[1] < t_ef[2]
    # ef_search below k is raised to k
    assert search_time_s(parse_index({**base, "ef_search": 1}, "i"), dev, 1) == \
        search_time_s(parse_index({**base, "ef_search": 10}, "i"), dev, 1)
    small = search_time_s(parse_index({**base, "ef_search": 64}, "i"), dev, 1)[0]
    big = search_time_s(parse_index({**base, "ef_search": 64, "vectors": 1_000_000_000}, "i"), dev, 1)[0]
    assert small < big < 1.5 * small  # logarithmic, not linear, in N
    # random access: a tiny vector still costs a cache line
    tiny = IndexSpec("hnsw", vectors=1000, dim=2, ef_search=10, hnsw_m=8)
    _, _, m = search_time_s(tiny, TOY, 1)
    assert m * 5e5 >= (10 * 8) * 64


def test_zero_batch_costs_nothing():
    assert search_time_s(parse_index(IVF, "i"), HARDWARE["Grace"], 0) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("doc,field", [
    ({"kind": "annoy", "vectors": 10, "dim": 4}, "rag.index.kind"),
    ({"vectors": 10, "dim": 4}, "rag.index.kind"),
    ({"kind": "flat", "dim": 4}, "rag.index.vectors"),
    ({"kind": "flat", "vectors": 10, "dim": -4}, "rag.index.dim"),
    ({"kind": "flat", "vectors": 10, "dim": 4, "k": 0}, "rag.index.k"),
    ({"kind": "flat", "vectors": 10, "dim": 4, "k": 11}, "rag.index.k"),
    ({"kind": "flat", "vectors": 10, "dim": 4.5}, "rag.index.dim"),
    ({"kind": "flat", "vectors": True, "dim": 4}, "rag.index.vectors"),
    ({"kind": "flat", "vectors": 10, "dim": 4, "nprobe": 3}, "rag.index.nprobe"),
    ({"kind": "flat", "vectors": 10, "dim": 4, "dtype_bytes": 3}, "rag.index.dtype_bytes"),
    ({**IVF, "probes": -1}, "rag.index.probes"),
    ({**IVF, "probes": 0}, "rag.index.probes"),
    ({**IVF, "probes": 70_000}, "rag.index.probes"),
    ({k: v for k, v in IVF.items() if k != "centroids"}, "rag.index.centroids"),
    ({**IVF, "pq_m": 0}, "rag.index.pq_m"),
    ({**IVF, "pq_m": 100}, "rag.index.pq_m"),
    ({"kind": "hnsw", "vectors": 10, "dim": 4, "hnsw_m": 1}, "rag.index.hnsw_m"),
])
def test_bad_specs_name_the_field(doc, field):
    with pytest.raises(SpecError) as err:
        parse_index(doc, "rag.index")
    assert err.value.field == field


def test_parse_accepts_integral_floats_and_defaults():
    ix = parse_index({"kind": "hnsw", "vectors": 1e6, "dim": 768.0}, "i")
    assert ix == IndexSpec("hnsw", vectors=1_000_000, dim=768)
    with pytest.raises(SpecError):
        parse_index(["flat"], "i")  # type: ignore[arg-type]
