"""Capacity search: the highest arrival rate at which a configuration meets its SLOs.

As Vidur's config explorer does per configuration: find a bracket by doubling (or
halving) the rate from a start, then bisect until the bracket is within a relative
tolerance. A rate "meets" the SLOs when, for every seed, no request is dropped and each
SLO statistic (``ttft_p90``, ``tpot_p99``, ``e2e_mean``, ...) is at or below its target.
The same seed scales one arrival pattern with the rate, so the check is (close to)
monotone in the rate and a looser SLO never gives a lower capacity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim_engine import SpecError, load_spec
from sim_engine.fields import Fields

SLO_METRICS = ("ttft", "tpot", "e2e", "queue", "itl")
SLO_STATS = ("mean", "p50", "p90", "p99", "max")
RATE_FIELD = "workload.arrival.rate"
RATE_PROCESSES = ("poisson", "gamma", "constant")


def parse_slos(items: list[str]) -> dict[str, float]:
    """``ttft_p90=0.5`` pairs (seconds) -> {"ttft_p90": 0.5}; errors name the --slo item."""
    if not items:
        raise SpecError("--slo", "give at least one SLO, e.g. --slo ttft_p90=0.5")
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, _, stat = key.partition("_")
        if not sep or metric not in SLO_METRICS or stat not in SLO_STATS:
            raise SpecError(f"--slo {item}", f"expected METRIC_STAT=SECONDS with METRIC in {', '.join(SLO_METRICS)} "
                            f"and STAT in {', '.join(SLO_STATS)}")
        out[key] = Fields({key: _number(value)}, "--slo").float(key, None, positive=True)
    return out


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def meets(summary: dict[str, Any], slos: dict[str, float]) -> bool:
    if summary["requests"]["dropped"] or summary["requests"]["in_flight"]:
        return False
    lat = summary["latency_s"]
    return all(lat[key.split("_")[0]][key.split("_")[1]] <= target for key, target in slos.items())


@dataclass
class CapacityResult:
    max_rate: float  # the highest rate found to meet the SLOs (0.0: not even the lowest probed)
    fail_rate: float | None  # the lowest rate found to miss them (None: none missed up to max)
    probes: list[tuple[float, bool]] = field(default_factory=list)


def search(check: Callable[[float], bool], start: float, rel_tol: float = 0.05, max_rate: float = 1e4,
           min_rate: float = 1e-3) -> CapacityResult:
    """Bisection over the rate for the boundary of `check` (assumed true below it, false above)."""
    probes: list[tuple[float, bool]] = []

    def probe(rate: float) -> bool:
        ok = check(rate)
        probes.append((rate, ok))
        return ok

    rate = start
    if probe(rate):
        lo, hi = rate, None
        while hi is None and lo < max_rate:
            rate = min(lo * 2, max_rate)
            if probe(rate):
                lo = rate
            else:
                hi = rate
        if hi is None:
            return CapacityResult(lo, None, probes)
    else:
        lo, hi = None, rate
        while lo is None and hi > min_rate:
            rate = hi / 2
            if probe(rate):
                lo = rate
            else:
                hi = rate
        if lo is None:
            return CapacityResult(0.0, hi, probes)
    while hi - lo > rel_tol * lo:
        mid = math.sqrt(lo * hi)  # geometric: rates span orders of magnitude
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return CapacityResult(lo, hi, probes)


def check_rate_spec(base: dict[str, Any], overrides: dict[str, Any]) -> float:
    """The spec's own arrival rate (the search's start); errors if its arrival process has none."""
    spec = load_spec(base, overrides)
    if spec.workload.arrival not in RATE_PROCESSES:
        raise SpecError("workload.arrival.process", f"capacity search needs an arrival rate "
                        f"({', '.join(RATE_PROCESSES)}), got {spec.workload.arrival!r}")
    return float(spec.workload.arrival_params["rate"])


def capacity_task(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: one configuration's capacity search (task: base, overrides, seeds, slos, tol, max_rate, start)."""
    from sim_engine import Simulation

    base, overrides, seeds, slos = task["base"], task["overrides"], task["seeds"], task["slos"]

    def check(rate: float) -> bool:
        for seed in seeds:
            sim = Simulation(load_spec(base, {**overrides, RATE_FIELD: rate, "seed": seed}))
            sim.run()
            if not meets(sim.summary(), slos):
                return False
        return True

    try:
        start = task.get("start") or check_rate_spec(base, overrides)
        r = search(check, start, task.get("tol", 0.05), task.get("max_rate", 1e4))
    except (SpecError, ValueError) as e:
        return {"error": str(e)}
    return {"max_rate": r.max_rate, "fail_rate": r.fail_rate, "probes": r.probes}


def devices_and_cost(base: dict[str, Any], overrides: dict[str, Any],
                     prices: dict[str, float]) -> tuple[int, float | None]:
    """Devices of the configuration's cluster and its $/hour (None without a price table)."""
    spec = load_spec(base, overrides)
    hw = [c for c in spec.clients if c.hardware is not None]
    devices = sum(c.n_devices for c in hw)
    if not prices:
        return devices, None
    for c in hw:
        if c.hardware.name not in prices:
            raise SpecError(f"prices.{c.hardware.name}", f"missing (client {c.id} runs on it)")
    return devices, sum(prices[c.hardware.name] * c.n_devices for c in hw)
