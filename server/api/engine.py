"""The server's only door into sim_engine: building specs from wire input and simulations from specs.

Wire input is untrusted:

* a spec never comes from a path on the server's disk: YAML text is parsed
  here (never handed to `load_spec`, which would take a one-line text for a
  file name), and only named presets are looked up;
* spec text and documents are bounded in size (`max_spec_bytes`) before any
  parsing, then parsed with the engine's limits on depth, node count and alias
  expansion (`sim_engine.safe_yaml`), so no request holds the GIL for long;
* data files a spec names (traces) are resolved by the engine inside the
  operator's `--data-dir` only (`load_spec(..., data_dir=...)`); a client may
  never set `base_dir`;
* a session whose estimated memory (`estimate_memory_bytes(spec)`) exceeds the
  per-session cap is refused before anything is allocated.

Where the engine does not offer one of these yet, the fallback is the stricter
choice (bundled traces only; `yaml.safe_load` behind the size limit; no memory
check) and `engine_support()` says which are missing.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

import sim_engine
from sim_engine import spec as spec_module

from ..errors import exhausted, invalid, not_found
from . import wire

try:  # the engine's bounded YAML parser (sim_engine/safe_yaml.py)
    from sim_engine import safe_yaml as _safe_yaml
except ImportError:  # an engine without it: yaml.safe_load behind the server's size limit
    _safe_yaml = None

_LOAD_SPEC_TAKES_DATA_DIR = "data_dir" in inspect.signature(sim_engine.load_spec).parameters
_ESTIMATE = getattr(spec_module, "estimate_memory_bytes", None) or getattr(sim_engine, "estimate_memory_bytes", None)
# keys whose string value names a data file (engine fields workload.arrival.trace, an
# empirical length's trace, a client's perf.trace_path); checked only without data_dir support
_PATH_KEYS = ("trace", "trace_path")
MIB = 1024 * 1024


def engine_support() -> dict[str, bool]:
    """Which of the engine's guards this server uses (logged at start)."""
    return {"bounded_yaml": _safe_yaml is not None, "data_dir": _LOAD_SPEC_TAKES_DATA_DIR,
            "memory_estimate": _ESTIMATE is not None}


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


def document_from_source(source: Any, max_bytes: int) -> dict:
    """The spec document named by a hermes.v1.SpecSource message (no file is ever opened)."""
    which = source.WhichOneof("source")
    if which is None:
        raise invalid("spec", "missing (set document, yaml or preset)")
    if which == "preset":
        name = validate_preset_name(source.preset)
        doc = presets().get(name)
        if doc is None:
            raise not_found("spec.preset", f"no preset {name!r} (presets: {', '.join(sorted(presets()))})")
        return copy.deepcopy(doc)
    if which == "yaml":
        size = len(source.yaml.encode("utf-8", "surrogatepass"))
        if max_bytes and size > max_bytes:
            raise exhausted("spec.yaml", f"{size} bytes exceed the limit of {max_bytes} bytes of spec text")
        doc = _parse_yaml(source.yaml)
        if not isinstance(doc, dict):
            raise invalid("spec.yaml", "must be a mapping")
        _check_finite(doc)
        return doc
    size = source.document.ByteSize()
    if max_bytes and size > max_bytes:
        raise exhausted("spec.document", f"{size} bytes exceed the limit of {max_bytes} bytes of spec")
    doc = wire.struct_to_plain(source.document, "spec.document")
    if _safe_yaml is not None:
        _safe_yaml.check_plain(doc, "spec.document")
    return doc


def _check_finite(doc: dict) -> None:
    """YAML can spell .nan and .inf; the wire's Struct cannot carry them, so no spec holds them."""
    work: list[tuple[str, Any]] = [("", doc)]
    while work:
        path, node = work.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            here = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
            if isinstance(value, float) and not math.isfinite(value):
                raise invalid(here, f"must be a finite number, got {value}")
            if isinstance(value, (dict, list)):
                work.append((here, value))


def validate_preset_name(name: str) -> str:
    if len(name) > 128 or not name.isprintable():
        raise invalid("spec.preset", "not a preset name (at most 128 printable characters)")
    return name


def _parse_yaml(text: str) -> Any:
    if _safe_yaml is not None:
        return _safe_yaml.parse_yaml(text, "spec.yaml")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise invalid("spec.yaml", f"not valid YAML/JSON: {exc}") from None
    except RecursionError:
        raise invalid("spec.yaml", "nested too deeply") from None


def build_spec(doc: dict, overrides: dict[str, Any], seed: int | None, max_requests: int,
               data_dir: str | None = None, memory_cap_bytes: int = 0) -> Any:
    """Validate `doc` with overrides and seed; check its memory; cap its request limit at the server's.

    The memory estimate is of the spec as the client wrote it (what it sets in motion by
    itself); requests injected later are bounded by the server's per-session request limit,
    which is applied afterwards (estimating with it would charge every session for a
    million requests it may never see).
    """
    refuse_paths(doc, overrides)
    overrides = dict(overrides)
    if seed is not None:
        overrides["seed"] = seed
    spec = _load(doc, overrides, data_dir)
    if not 0 <= int(spec.seed) < 2**64:  # SessionInfo.seed is a uint64
        raise invalid("seed", f"must be an integer in [0, 2^64), got {spec.seed}")
    check_memory(spec, memory_cap_bytes)
    if max_requests:
        wanted = spec.workload.num_requests
        if wanted is not None and wanted > max_requests:
            raise exhausted("workload.num_requests",
                            f"{wanted} exceeds the server's limit of {max_requests} requests per session")
        if spec.max_requests is None or spec.max_requests > max_requests:
            overrides["limits.max_requests"] = max_requests
            spec = _load(doc, overrides, data_dir)
    return spec


def _load(doc: dict, overrides: dict[str, Any], data_dir: str | None) -> Any:
    if _LOAD_SPEC_TAKES_DATA_DIR:
        return sim_engine.load_spec(doc, overrides=overrides, data_dir=data_dir)
    return sim_engine.load_spec(doc, overrides=overrides)


def refuse_paths(doc: dict, overrides: Mapping[str, Any] | None = None, root: str = "spec") -> None:
    """`base_dir` is the engine's own note of a spec file's folder, never a client's to set; and
    when the engine cannot confine data files to a data dir, only bundled traces are named."""
    bundled = set(getattr(spec_module, "BUNDLED_TRACES", {}))
    work: list[tuple[str, Any]] = [(root, doc)] + [(f"overrides[{k!r}]", {k.rsplit(".", 1)[-1]: v})
                                                    for k, v in (overrides or {}).items()]
    while work:
        path, node = work.pop()
        if isinstance(node, list):
            work.extend((f"{path}[{i}]", v) for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            here = f"{path}.{key}" if path != "spec" else str(key)
            if not isinstance(key, str):
                continue
            if key == "base_dir":
                raise invalid(here, "not accepted over the wire")
            if (key in _PATH_KEYS and isinstance(value, str) and not _LOAD_SPEC_TAKES_DATA_DIR
                    and value not in bundled):
                raise invalid(here, f"this server reads bundled traces only ({', '.join(sorted(bundled))})")
            if isinstance(value, (dict, list)):
                work.append((here, value))


def check_memory(spec: Any, cap_bytes: int) -> None:
    """RESOURCE_EXHAUSTED, naming the field that dominates, when the spec's estimated memory exceeds the cap.

    The engine's estimate is an object with `total_bytes` and `dominant_field` (a plain number
    or a {field: bytes} mapping are taken too).
    """
    if not cap_bytes or _ESTIMATE is None:
        return
    estimate = _ESTIMATE(spec)
    if hasattr(estimate, "total_bytes"):
        total, field_name = int(estimate.total_bytes), str(getattr(estimate, "dominant_field", "spec"))
    elif isinstance(estimate, Mapping):
        total = int(sum(estimate.values()))
        field_name = max(estimate, key=lambda k: estimate[k]) if estimate else "spec"
    else:
        total, field_name = int(estimate), "spec"
    if total > cap_bytes:
        raise exhausted(field_name, f"the session would need about {total / MIB:.0f} MiB, more than the "
                        f"per-session cap of {cap_bytes / MIB:.0f} MiB (--session-memory-mb)")


def new_simulation(spec: Any) -> Any:
    return sim_engine.Simulation(spec, record_events=True)


def restore_simulation(blob: bytes) -> Any:
    return sim_engine.Simulation.restore(blob)


def state_digest(sim: Any) -> str:
    from sim_engine.digest import state_digest as digest

    return digest(sim)


__all__ = ["build_spec", "check_memory", "document_from_source", "engine_support", "new_simulation",
           "preset_summaries", "presets", "refuse_paths", "restore_simulation", "router_policies"]
