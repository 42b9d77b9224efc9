"""Default specs of the registered environments (small, so an episode takes a fraction of a second)."""

from __future__ import annotations

import copy
from typing import Any

# Three unlike GPUs serving one model: where a request goes matters (an L40S decodes
# several times slower than an H100), so a router has something to learn.
ROUTING_SPEC: dict[str, Any] = {
    "name": "rl-routing-hetero",
    "seed": 0,
    "clients": [
        {"id": "h100-0", "hardware": "H100-SXM", "model": "Llama-3.1-8B"},
        {"id": "a100-0", "hardware": "A100-80GB", "model": "Llama-3.1-8B"},
        {"id": "l40s-0", "hardware": "L40S", "model": "Llama-3.1-8B"},
    ],
    "router": {"policy": "external"},
    "workload": {
        "arrival": {"process": "poisson", "rate": 12.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 800, "sigma": 0.7, "max": 6000},
        "output_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.7, "max": 1500},
        "num_requests": 120,
    },
}

# The autoscaler's world: the cluster starts with one client of the first kind; the
# environment adds and drains clients of the kinds below as the bursty load changes.
AUTOSCALE_SPEC: dict[str, Any] = {
    "name": "rl-autoscale",
    "seed": 0,
    "clients": [{"id": "h100-init", "hardware": "H100-SXM", "model": "Llama-3.1-8B"}],
    "router": {"policy": "least_loaded"},
    "workload": {
        "arrival": {"process": "gamma", "rate": 20.0, "cv": 2.0},
        "prompt_tokens": {"dist": "lognormal", "mean": 800, "sigma": 0.7, "max": 6000},
        "output_tokens": {"dist": "lognormal", "mean": 200, "sigma": 0.7, "max": 1500},
        "num_requests": 400,
    },
}

AUTOSCALE_KINDS: dict[str, dict[str, Any]] = {
    # cost per device-hour: rough 2025 cloud on-demand prices (what matters is the ratio)
    "h100": {"client": {"hardware": "H100-SXM", "model": "Llama-3.1-8B"}, "cost_per_hour": 4.0, "max": 4},
    "l40s": {"client": {"hardware": "L40S", "model": "Llama-3.1-8B"}, "cost_per_hour": 1.2, "max": 4},
}


def routing_spec() -> dict[str, Any]:
    return copy.deepcopy(ROUTING_SPEC)


def autoscale_spec() -> dict[str, Any]:
    return copy.deepcopy(AUTOSCALE_SPEC)


def autoscale_kinds() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(AUTOSCALE_KINDS)
