"""Cost models for batched vector search (the retrieval step of a RAG stage).

Why analytical: a RAG pipeline's search runs on a CPU or an accelerator, and what matters
for the simulator is how its latency scales with the index, the search parameters, the
batch and the device. Each algorithm is split into *phases*; a phase costs
``max(flops / (peak * compute_eff), bytes / (mem_bw * mem_eff))`` (a roofline: the phase's
loop is either compute- or bandwidth-bound) and phases run one after the other, so the
time is the sum over phases. The peak is the device's ``peak_flops`` for the vector dtype
(fp32 for 4-byte vectors, fp16 for 2, int8 for 1; CPU presets give the same number for
all). The bandwidth is the device-memory bandwidth. Unlike MIST/RAGO, which *add* compute
and memory time, overlapping them within a phase is assumed (streaming kernels overlap).

Notation: B queries, N vectors, D dims, s = dtype_bytes, C centroids, p probes,
m = pq_m sub-quantizers (8-bit codes: m bytes per vector), k results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .fields import Fields
from .hardware import Device
from .limits import MAX_INDEX_DIM, MAX_INDEX_PARAM, MAX_INDEX_VECTORS

INDEX_KINDS = ("flat", "ivf_pq", "hnsw")
CACHE_LINE_BYTES = 64  # granularity of a random memory access
ID_BYTES = 8  # stored vector id (int64, as in FAISS)
HNSW_LINK_BYTES = 4  # one neighbour id in an HNSW adjacency list
_DTYPES = {4: "fp32", 2: "fp16", 1: "int8"}


@dataclass(frozen=True)
class IndexSpec:
    """One vector index: its algorithm, size and search parameters."""

    kind: str  # "flat" | "ivf_pq" | "hnsw"
    vectors: int  # N
    dim: int  # D
    centroids: int = 0  # IVF lists (C)
    probes: int = 0  # IVF lists scanned per query (p)
    pq_m: int = 0  # PQ sub-quantizers = code bytes per vector (8-bit codes)
    k: int = 10  # results per query
    ef_search: int = 0  # HNSW candidate-list size; effective value is max(ef_search, k)
    hnsw_m: int = 32  # HNSW links per node (upper layers; layer 0 has 2*M)
    dtype_bytes: int = 4  # bytes per stored vector element (flat, HNSW, centroids)


def parse_index(doc: Mapping[str, Any], field: str) -> IndexSpec:
    """Validate a mapping into an IndexSpec; SpecError names ``field.<key>`` on bad input."""
    f = Fields(doc, field)
    kind = f.str("kind", None, INDEX_KINDS)
    if kind is None:
        raise SpecError(f"{field}.kind", f"must be one of {', '.join(INDEX_KINDS)}, got None")
    defaults = IndexSpec(kind=kind, vectors=1, dim=1)
    values: dict[str, int] = {}
    for key in list(IndexSpec.__dataclass_fields__)[1:]:  # declaration order: deterministic errors
        top = MAX_INDEX_VECTORS if key == "vectors" else MAX_INDEX_DIM if key == "dim" else MAX_INDEX_PARAM
        v = f.int(key, None, minimum=0, maximum=top)
        if v is None:
            if key in ("vectors", "dim"):
                raise SpecError(f"{field}.{key}", "is required")
            v = getattr(defaults, key)
        values[key] = v
    f.done()
    spec = IndexSpec(kind=kind, **values)
    _check(spec, field)
    return spec


def _check(s: IndexSpec, field: str) -> None:
    def need(cond: bool, key: str, reason: str) -> None:
        if not cond:
            raise SpecError(f"{field}.{key}", reason)

    need(s.vectors >= 1, "vectors", "must be >= 1")
    need(s.dim >= 1, "dim", "must be >= 1")
    need(s.k >= 1, "k", "must be >= 1")
    need(s.k <= s.vectors, "k", f"must not exceed vectors ({s.vectors})")
    need(s.dtype_bytes in _DTYPES, "dtype_bytes", f"must be one of {sorted(_DTYPES)}")
    if s.kind == "ivf_pq":
        need(s.centroids >= 1, "centroids", "ivf_pq needs centroids >= 1")
        need(s.centroids <= s.vectors, "centroids", f"must not exceed vectors ({s.vectors})")
        need(s.probes >= 1, "probes", "ivf_pq needs probes >= 1")
        need(s.probes <= s.centroids, "probes", f"must not exceed centroids ({s.centroids})")
        need(s.pq_m >= 1, "pq_m", "ivf_pq needs pq_m >= 1")
        need(s.dim % s.pq_m == 0, "pq_m", f"must divide dim ({s.dim})")
    elif s.kind == "hnsw":
        need(s.hnsw_m >= 2, "hnsw_m", "must be >= 2")


def _phases(ix: IndexSpec, batch: int) -> list[tuple[float, float]]:
    """(flops, bytes) of each sequential phase for a batch of ``batch`` queries.

    flat (brute force, batched GEMM against the whole set, then top-k):
        flops = B * N * (2D + 1)          2D per distance, 1 comparison per candidate
        bytes = N * D * s + B * D * s     the set is streamed once per batch
    ivf_pq (like RAGO / HERMES, phase by phase):
        coarse:  flops = B * 2 * D * C;   bytes = C * D * s (centroid table once per batch) + B * D * s
        LUT:     flops = B * p * 256 * 2D (m * 256 entries of D/m dims, per probe for residuals);
                 bytes = 256 * D * s      (PQ codebooks, once per batch)
        scan:    n = p * N / C codes per query;
                 flops = B * n * (m + 1)  (m table-lookup adds + 1 top-k comparison per code);
                 bytes = B * n * m + B * k * 8  (each query reads its own lists, no sharing
                 between queries; plus the ids of its k results)
    hnsw (graph walk, random access, nothing shared between queries):
        ef = max(ef_search, k); visits = ef * M + M * log2(N)
            (ef expanded candidates with about M new neighbours each, plus about log2(N)
             greedy hops through the upper layers, each examining M neighbours)
        flops = B * visits * (2D + 1)
        bytes = B * (visits * max(D * s, 64) + ef * max(2M * 4, 64))
            (every distance reads one vector at cache-line granularity; every expanded
             node reads its layer-0 neighbour list of 2M ids)
    """
    b, n, d, s = batch, ix.vectors, ix.dim, ix.dtype_bytes
    if ix.kind == "flat":
        return [(b * n * (2.0 * d + 1.0), float(n * d * s + b * d * s))]
    if ix.kind == "ivf_pq":
        m = ix.pq_m
        scanned = ix.probes * n / ix.centroids
        return [
            (b * 2.0 * d * ix.centroids, float(ix.centroids * d * s + b * d * s)),
            (b * ix.probes * 256.0 * 2.0 * d, 256.0 * d * s),
            (b * scanned * (m + 1.0), b * scanned * m + b * ix.k * ID_BYTES),
        ]
    if ix.kind == "hnsw":
        ef = max(ix.ef_search, ix.k)
        visits = ef * ix.hnsw_m + ix.hnsw_m * math.log2(max(n, 2))
        per_vec = max(d * s, CACHE_LINE_BYTES)
        per_list = max(2 * ix.hnsw_m * HNSW_LINK_BYTES, CACHE_LINE_BYTES)
        return [(b * visits * (2.0 * d + 1.0), b * (visits * per_vec + ef * per_list))]
    raise SpecError("index.kind", f"must be one of {', '.join(INDEX_KINDS)}, got {ix.kind!r}")


def search_time_s(index: IndexSpec, device: Device, batch: int) -> tuple[float, float, float]:
    """(time_s, compute_s, memory_s) to search ``batch`` queries on ``device``.

    time = sum over phases of max(compute, memory); compute_s and memory_s are the sums of
    the per-phase compute and memory times (so time <= compute_s + memory_s).
    """
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    if batch == 0:
        return 0.0, 0.0, 0.0
    flops_s = device.peak_flops(_DTYPES.get(index.dtype_bytes, "fp32")) * device.compute_eff
    bytes_s = device.mem_bw_gbs * 1e9 * device.mem_eff
    total = comp = mem = 0.0
    for flops, nbytes in _phases(index, batch):
        c, m = flops / flops_s, nbytes / bytes_s
        total += max(c, m)
        comp += c
        mem += m
    return total, comp, mem


def index_bytes(index: IndexSpec) -> float:
    """Memory footprint of the index in bytes (what must fit in the device's memory).

    flat:   N * D * s
    ivf_pq: C * D * s (centroids) + N * (m + 8) (codes + int64 ids) + 256 * D * s (codebooks)
    hnsw:   N * (D * s + 4 * (2M + M/(M-1))) (vectors, layer-0 lists of 2M ids, upper-layer
            lists of M ids: a node reaches level l with probability M^-l, a geometric series)
    """
    n, d, s = index.vectors, index.dim, index.dtype_bytes
    if index.kind == "flat":
        return float(n * d * s)
    if index.kind == "ivf_pq":
        return float(index.centroids * d * s + n * (index.pq_m + ID_BYTES) + 256 * d * s)
    if index.kind == "hnsw":
        mm = index.hnsw_m
        return n * (d * s + HNSW_LINK_BYTES * (2 * mm + mm / (mm - 1)))
    raise SpecError("index.kind", f"must be one of {', '.join(INDEX_KINDS)}, got {index.kind!r}")
