"""A sweep file: a base spec, dotted spec fields to vary (grid or random sample), seeds.

    base: examples/specs/llama3-8b-h100.yaml     # file (relative to this one), preset name, or a mapping
    set: {workload.num_requests: 200}            # fixed overrides of every run
    grid:                                        # every combination ...
      workload.arrival.rate: [2, 4, 8]
      clients[0].hardware: [H100-SXM, A100-80GB]
    random:                                      # ... or a random sample (not both)
      samples: 20
      seed: 0
      fields:
        workload.arrival.rate: {uniform: [1, 10]}   # uniform | loguniform | int | choice
    seeds: 3                                     # 0, 1, 2 (or a list)
    prices: {H100-SXM: 4.0, A100-80GB: 2.5}      # $ per device-hour (capacity: cluster cost)

Every run's spec is validated before anything runs; errors name the sweep file's field
(``grid.workload.arrival.rat: ...``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim_engine import SimSpec, SpecError, load_spec
from sim_engine.fields import Fields

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
MAX_RUNS = 1_000_000  # a bound on a sweep's size, so a typo in a grid cannot exhaust memory


@dataclass(frozen=True)
class Run:
    """One simulation of a sweep: the base document with ``overrides`` and ``seed``."""

    index: int
    config: dict[str, Any]  # the swept fields' values (dotted name -> value)
    seed: int

    @property
    def run_id(self) -> str:
        key = json.dumps({"config": self.config, "seed": self.seed}, sort_keys=True)
        return hashlib.sha1(key.encode()).hexdigest()[:12]


@dataclass
class SweepPlan:
    base: dict[str, Any]  # the validated base spec document (base_dir included)
    fixed: dict[str, Any]  # `set`
    fields: list[str]  # swept dotted fields, in file order
    configs: list[dict[str, Any]]
    seeds: list[int]
    prices: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def runs(self) -> list[Run]:
        out = []
        for config in self.configs:
            for seed in self.seeds:
                out.append(Run(len(out), config, seed))
        return out

    def overrides(self, config: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        out = {**self.fixed, **config}
        if seed is not None:
            out["seed"] = seed
        return out

    def spec(self, config: dict[str, Any], seed: int | None = None) -> SimSpec:
        return load_spec(self.base, self.overrides(config, seed))


def _values(f: Fields, key: str) -> list[Any]:
    values = f.raw(key)
    if not isinstance(values, list) or not values:
        raise SpecError(f.name(key), "must be a non-empty list of values")
    return values


def _sample(f: Fields, key: str, rng: np.random.Generator, n: int) -> list[Any]:
    d = Fields(f.raw(key), f.name(key))
    kinds = [k for k in DISTRIBUTIONS if k in d.doc]
    if len(kinds) != 1:
        raise SpecError(d.path, f"give exactly one distribution of {', '.join(DISTRIBUTIONS)}")
    kind = kinds[0]
    arg = d.raw(kind)
    d.done()
    where = f"{d.path}.{kind}"
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise SpecError(where, "must be a non-empty list of values")
        return [arg[i] for i in rng.integers(0, len(arg), size=n)]
    if (not isinstance(arg, list) or len(arg) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg) or arg[1] < arg[0]):
        raise SpecError(where, "must be [low, high] with low <= high")
    lo, hi = arg
    if kind == "uniform":
        return [float(v) for v in rng.uniform(lo, hi, size=n)]
    if kind == "loguniform":
        if lo <= 0:
            raise SpecError(where, "low must be > 0")
        return [float(v) for v in np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))]
    if lo != int(lo) or hi != int(hi):
        raise SpecError(where, "must be [low, high] integers")
    return [int(v) for v in rng.integers(int(lo), int(hi) + 1, size=n)]


def _base(value: Any, sweep_dir: Path | None) -> dict[str, Any]:
    try:
        if isinstance(value, dict):
            return load_spec(value).document
        if not isinstance(value, str) or not value:
            raise SpecError("base", "must be a spec file, a preset name or a spec mapping")
        path = Path(value)
        if sweep_dir is not None and not path.is_absolute() and (sweep_dir / path).is_file():
            path = sweep_dir / path
        return load_spec(str(path) if path.is_file() else value).document
    except SpecError as e:
        if e.field == "base":
            raise
        raise SpecError(f"base.{e.field}" if e.field != "spec" else "base", e.reason) from None


def parse(doc: Any, sweep_dir: Path | None = None, source: str = "") -> SweepPlan:
    """Validate a sweep document into a plan; every run's spec is checked here, before any runs."""
    f = Fields(doc, "")
    if "base" not in (doc or {}):
        raise SpecError("base", "missing (a spec file, a preset name or a spec mapping)")
    base = _base(f.raw("base"), sweep_dir)
    fixed_doc = f.raw("set") or {}
    if not isinstance(fixed_doc, dict):
        raise SpecError("set", "must be a mapping of dotted spec fields to values")
    fixed = dict(fixed_doc)
    grid_doc, random_doc = f.raw("grid"), f.raw("random")
    if grid_doc is not None and random_doc is not None:
        raise SpecError("random", "give grid or random, not both")
    fields_: list[str] = []
    configs: list[dict[str, Any]] = [{}]
    if grid_doc is not None:
        g = Fields(grid_doc, "grid")
        fields_ = list(grid_doc)
        columns = [_values(g, k) for k in fields_]
        size = int(np.prod([len(c) for c in columns])) if columns else 1
        if size > MAX_RUNS:
            raise SpecError("grid", f"{size} combinations; at most {MAX_RUNS}")
        configs = [dict(zip(fields_, combo, strict=True)) for combo in itertools.product(*columns)]
    elif random_doc is not None:
        r = Fields(random_doc, "random")
        n = r.int("samples", None, maximum=MAX_RUNS)
        if n is None:
            raise SpecError("random.samples", "missing (how many configurations to draw)")
        rng = np.random.default_rng(r.int("seed", 0, minimum=0))
        fdoc = r.raw("fields")
        if not isinstance(fdoc, dict) or not fdoc:
            raise SpecError("random.fields", "must be a mapping of dotted spec fields to distributions")
        r.done()
        ff = Fields(fdoc, "random.fields")
        fields_ = list(fdoc)
        columns = [_sample(ff, k, rng, n) for k in fields_]
        configs = [dict(zip(fields_, combo, strict=True)) for combo in zip(*columns, strict=True)]
    seeds_doc = f.raw("seeds")
    if seeds_doc is None:
        seeds = [int(base.get("seed", 0))]
    elif isinstance(seeds_doc, int) and not isinstance(seeds_doc, bool):
        seeds = list(range(Fields({"seeds": seeds_doc}, "").int("seeds", maximum=MAX_RUNS)))
    elif isinstance(seeds_doc, list) and seeds_doc and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds_doc):
        seeds = list(seeds_doc)
    else:
        raise SpecError("seeds", f"must be a count or a non-empty list of integers >= 0, got {seeds_doc!r}")
    if len(configs) * len(seeds) > MAX_RUNS:
        raise SpecError("seeds", f"{len(configs) * len(seeds)} runs; at most {MAX_RUNS}")
    prices_doc = f.raw("prices") or {}
    p = Fields(prices_doc, "prices")
    prices = {hw: p.float(hw, None) for hw in prices_doc}
    f.done()
    plan = SweepPlan(base, fixed, fields_, configs, seeds, prices, source)
    _check_runs(plan, grid_doc is not None)
    return plan


def _check_runs(plan: SweepPlan, grid: bool) -> None:
    """Validate every configuration's spec, naming the sweep field a spec error comes from."""
    section = "grid" if grid else "random.fields"
    for config in plan.configs:
        try:
            plan.spec(config)
        except SpecError as e:
            owner = _owner(plan, config, e.field, section)
            raise SpecError(owner, f"{e.field}: {e.reason}") from None


def _owner(plan: SweepPlan, config: dict[str, Any], spec_field: str, section: str) -> str:
    """The sweep-file field a spec error is about (the swept or fixed key at or above it)."""
    norm = spec_field.replace("[", ".").replace("]", "")
    for key in list(config) + list(plan.fixed):
        k = key.replace("[", ".").replace("]", "")
        if norm == k or norm.startswith(k + ".") or k.startswith(norm + "."):
            return f"{section}.{key}" if key in config else f"set.{key}"
    return f"base.{spec_field}"


def load(path: str | Path) -> SweepPlan:
    """Read and validate a sweep file (YAML or JSON)."""
    p = Path(path)
    if not p.is_file():
        raise SpecError("sweep", f"no such file: {path}")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise SpecError("sweep", f"{path}: not valid YAML: {e}") from None
    return parse(doc, p.resolve().parent, str(p))
