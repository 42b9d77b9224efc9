"""The server's only door into sim_engine: building specs from wire input and simulations from specs.

Wire input is untrusted, so a spec never comes from a path on the server's
disk: YAML text is parsed here, and only named presets are looked up.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

import sim_engine
from sim_engine import spec as spec_module

from ..errors import exhausted, invalid, not_found
from . import wire


@dataclass(frozen=True)
class PresetSummary:
    name: str
    description: str
    models: tuple[str, ...]
    hardware: tuple[str, ...]


@lru_cache(maxsize=1)
def presets() -> dict[str, dict]:
    return sim_engine.spec_presets()


def _names(doc: dict, key: str) -> tuple[str, ...]:
    out: list[str] = []
    for client in doc.get("clients") or []:
        value = client.get(key) if isinstance(client, dict) else None
        name = value.get("preset") if isinstance(value, dict) else value
        if isinstance(name, str) and name not in out:
            out.append(name)
    return tuple(out)


def preset_summaries() -> list[PresetSummary]:
    return [PresetSummary(name, str(doc.get("description", "")), _names(doc, "model"), _names(doc, "hardware"))
            for name, doc in sorted(presets().items())]


def router_policies() -> tuple[str, ...]:
    return tuple(spec_module.ROUTER_POLICIES)


def document_from_source(source: Any) -> dict:
    """The spec document named by a hermes.v1.SpecSource message."""
    which = source.WhichOneof("source")
    if which is None:
        raise invalid("spec", "missing (set document, yaml or preset)")
    if which == "preset":
        name = source.preset
        doc = presets().get(name)
        if doc is None:
            raise not_found("spec.preset", f"no preset {name!r} (presets: {', '.join(sorted(presets()))})")
        return copy.deepcopy(doc)
    if which == "yaml":
        try:
            doc = yaml.safe_load(source.yaml)
        except yaml.YAMLError as exc:
            raise invalid("spec.yaml", f"not valid YAML/JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise invalid("spec.yaml", "must be a mapping")
        return doc
    return wire.struct_to_plain(source.document, "spec.document")


def build_spec(doc: dict, overrides: dict[str, Any], seed: int | None, max_requests: int) -> Any:
    """Validate `doc` with overrides and seed; cap its request limit at the server's."""
    overrides = dict(overrides)
    if seed is not None:
        overrides["seed"] = seed
    spec = sim_engine.load_spec(doc, overrides=overrides)
    if max_requests:
        wanted = spec.workload.num_requests
        if wanted is not None and wanted > max_requests:
            raise exhausted("workload.num_requests",
                            f"{wanted} exceeds the server's limit of {max_requests} requests per session")
        if spec.max_requests is None or spec.max_requests > max_requests:
            overrides["limits.max_requests"] = max_requests
            spec = sim_engine.load_spec(doc, overrides=overrides)
    return spec


def new_simulation(spec: Any) -> Any:
    return sim_engine.Simulation(spec, record_events=True)


def restore_simulation(blob: bytes) -> Any:
    return sim_engine.Simulation.restore(blob)


def state_digest(sim: Any) -> str:
    from sim_engine.digest import state_digest as digest

    return digest(sim)
