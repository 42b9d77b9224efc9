"""A KV-cache memory hierarchy: where a request finds a prefix's KV cache, if anywhere.

Why: a kv_retrieval stage fetches a cached prefix from the fastest tier that holds it
(per-client DRAM, a node- or rack-shared pool, a global store), or falls back to
recomputing it in prefill. The tier that answers decides the transfer (bandwidth, latency,
and, in the simulator, the links it crosses), so this module answers only "which tier
instance holds it"; timing is the caller's job.

Tiers are listed fastest first, and that order is the lookup order (it is kept as given).
A tier has a *scope*: one instance per client, per node, per rack, or one global instance.
A request names its instances with ``scope_keys`` (scope -> instance key), so two clients
of the same rack share the rack tier's instance but never each other's client tier.

Two modes:

* ``"rates"`` -- the HERMES paper's model (Eq. 1): hit tier i with conditional probability
  h_i given a miss in every faster tier, i.e. unconditionally prod_{j<i}(1 - h_j) * h_i;
  capacity is not enforced and nothing is stored. One uniform draw per lookup (compared
  with the cumulative unconditional probabilities) keeps the random stream stable.
* ``"lru"`` -- each tier instance is an LRU cache of prefix_key -> bytes with the tier's
  capacity; a lookup hits the fastest instance that holds the prefix with at least the
  requested bytes, and refreshes its recency. ``insert`` stores a freshly computed prefix
  in every instance on the request's path that can hold it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import SpecError
from .fields import Fields, show
from .limits import MAX_BANDWIDTH_GBS, MAX_CAPACITY_GB, MAX_KV_TIERS, MAX_LATENCY_US

SCOPES = ("client", "node", "rack", "global")
MODES = ("rates", "lru")
_GLOBAL_KEY = "global"  # instance key of the global scope when the caller gives none


@dataclass(frozen=True)
class TierSpec:
    """One level of the hierarchy (e.g. per-client LPDDR, rack-shared CXL pool, SSD)."""

    id: str
    capacity_gb: float | None  # decimal GB per instance; None = unbounded
    bandwidth_gbs: float  # decimal GB/s of one tier instance, shared by every fetch from that instance
    latency_us: float  # lookup / access latency
    scope: str  # "client" | "node" | "rack" | "global"
    hit_rate: float | None = None  # conditional hit probability ("rates" mode)


def parse_tiers(doc: list, field: str = "kv_tiers") -> list[TierSpec]:
    """Validate a list of tier mappings (fastest first); SpecError names ``field[i].key``."""
    if not isinstance(doc, list):
        raise SpecError(field, f"must be a list of tiers, got {type(doc).__name__}")
    if len(doc) > MAX_KV_TIERS:
        raise SpecError(field, f"more than {MAX_KV_TIERS} tiers")
    tiers: list[TierSpec] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc):
        f = Fields(entry, f"{field}[{i}]")
        tid = f.str("id")
        if not tid:
            raise SpecError(f.name("id"), f"must be a non-empty string, got {show(tid)}")
        if tid in seen:
            raise SpecError(f.name("id"), f"duplicate tier id {show(tid)}")
        seen.add(tid)
        bw = f.float("bandwidth_gbs", None, positive=True, maximum=MAX_BANDWIDTH_GBS)
        if bw is None:
            raise SpecError(f.name("bandwidth_gbs"), "missing (decimal GB/s of one tier instance)")
        scope = f.str("scope", None, SCOPES)
        if scope is None:
            raise SpecError(f.name("scope"), f"missing (one of {', '.join(SCOPES)})")
        tiers.append(TierSpec(
            id=tid, capacity_gb=f.float("capacity_gb", None, positive=True, maximum=MAX_CAPACITY_GB),
            bandwidth_gbs=bw, latency_us=f.float("latency_us", 0.0, maximum=MAX_LATENCY_US), scope=scope,
            hit_rate=f.float("hit_rate", None, maximum=1.0),
        ))
        f.done()
    return tiers


class _LRU:
    """One tier instance: prefix_key -> bytes, least recently used first."""

    __slots__ = ("capacity", "entries", "used")

    def __init__(self, capacity: float | None) -> None:
        self.capacity = capacity  # bytes, None = unbounded
        self.entries: OrderedDict[str, int] = OrderedDict()
        self.used = 0


class KVHierarchy:
    """The tiers plus, in "lru" mode, the contents of every tier instance."""

    def __init__(self, tiers: list[TierSpec], mode: str, rng: np.random.Generator) -> None:
        if mode not in MODES:
            raise SpecError("kv_mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        if len({t.id for t in tiers}) != len(tiers):
            raise SpecError("kv_tiers", "tier ids must be unique")
        if mode == "rates":
            for i, t in enumerate(tiers):
                if t.hit_rate is None:
                    raise SpecError(f"kv_tiers[{i}].hit_rate", "is required in rates mode")
        self.tiers = list(tiers)
        self.mode = mode
        self.rng = rng
        # cumulative unconditional hit probabilities for "rates" mode
        self._cum: list[float] = []
        miss, acc = 1.0, 0.0
        for t in self.tiers:
            h = t.hit_rate or 0.0
            acc += miss * h
            miss *= 1.0 - h
            self._cum.append(acc)
        self._caches: dict[tuple[str, str], _LRU] = {}
        self._stats = {t.id: {"lookups": 0, "hits": 0, "inserts": 0, "evictions": 0} for t in self.tiers}

    def _instance(self, tier: TierSpec, scope_keys: Mapping[str, str]) -> str:
        key = scope_keys.get(tier.scope)
        if key is None:
            if tier.scope == "global":
                return _GLOBAL_KEY
            raise ValueError(f"scope_keys has no {tier.scope!r} key (needed by tier {tier.id!r})")
        return key

    def _cache(self, tier: TierSpec, inst: str) -> _LRU:
        c = self._caches.get((tier.id, inst))
        if c is None:
            cap = None if tier.capacity_gb is None else tier.capacity_gb * 1e9
            c = self._caches[(tier.id, inst)] = _LRU(cap)
        return c

    def lookup(self, scope_keys: Mapping[str, str], prefix_key: str, nbytes: int) -> tuple[str | None, str | None]:
        """(tier_id, instance_key) of the fastest tier holding the prefix, or (None, None)."""
        if self.mode == "rates":
            u = float(self.rng.random())
            for tier, cum in zip(self.tiers, self._cum, strict=True):
                st = self._stats[tier.id]
                st["lookups"] += 1
                if u < cum:
                    st["hits"] += 1
                    return tier.id, self._instance(tier, scope_keys)
            return None, None
        for tier in self.tiers:
            inst = self._instance(tier, scope_keys)
            st = self._stats[tier.id]
            st["lookups"] += 1
            c = self._caches.get((tier.id, inst))
            if c is not None and c.entries.get(prefix_key, -1) >= nbytes:
                c.entries.move_to_end(prefix_key)
                st["hits"] += 1
                return tier.id, inst
        return None, None

    def insert(self, scope_keys: Mapping[str, str], prefix_key: str, nbytes: int) -> list[tuple[str, str]]:
        """Store a computed prefix in every tier instance on the path that can hold it.

        Evicts least-recently-used entries to make room; returns the evictions as
        (tier_id, evicted prefix_key) -- the instance is the request's one for that tier.
        An entry larger than a tier's capacity is not stored there. No-op in "rates" mode.
        """
        if self.mode == "rates":
            return []
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        evicted: list[tuple[str, str]] = []
        for tier in self.tiers:
            c = self._cache(tier, self._instance(tier, scope_keys))
            if c.capacity is not None and nbytes > c.capacity:
                continue
            old = c.entries.pop(prefix_key, None)
            if old is not None:
                c.used -= old
            while c.capacity is not None and c.used + nbytes > c.capacity:
                victim, size = c.entries.popitem(last=False)
                c.used -= size
                evicted.append((tier.id, victim))
                self._stats[tier.id]["evictions"] += 1
            c.entries[prefix_key] = nbytes
            c.used += nbytes
            self._stats[tier.id]["inserts"] += 1
        return evicted

    def stats(self) -> dict[str, dict]:
        """Per tier: lookups, hits, hit_rate (of its lookups), inserts, evictions, bytes_stored, instances."""
        out: dict[str, dict] = {}
        for tier in self.tiers:
            st = dict(self._stats[tier.id])
            insts = [c for (tid, _), c in self._caches.items() if tid == tier.id]
            st["bytes_stored"] = sum(c.used for c in insts)
            st["instances"] = len(insts)
            st["hit_rate"] = st["hits"] / st["lookups"] if st["lookups"] else 0.0
            out[tier.id] = st
        return out


def scope_keys(client_id: str, node: str, rack: str) -> dict[str, str]:
    """The tier instances a client reaches: its own, its node's, its rack's and the global one."""
    return {"client": client_id, "node": node, "rack": rack, "global": _GLOBAL_KEY}


def prefix_tokens(prompt: int, stage_prefix: int | None, workload_prefix: int) -> int:
    """Tokens of a request's cacheable prefix: the stage's own, else the workload's, at most prompt - 1."""
    tokens = stage_prefix or workload_prefix
    return max(min(tokens, prompt - 1), 0)


def cached_prefix_tokens(prompt: int, pipeline, workload_prefix: int) -> int:
    """Prefix tokens to store after a request computed them (the workload's, else its kv_retrieval stage's)."""
    return prefix_tokens(prompt, None, workload_prefix) or prefix_tokens(prompt, next(
        (s.params.get("prefix_tokens") for s in pipeline if s.kind == "kv_retrieval"), None), workload_prefix)
