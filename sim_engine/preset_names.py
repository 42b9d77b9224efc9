"""The names people write for hardware and models, mapped to preset names.

Why: a published result says "NVIDIA H100 80GB HBM3" or "meta-llama/Llama-3.1-8B-Instruct", and a
user copies it. A name matches a preset when both agree after dropping case, separators and the
words that do not change the part or the architecture: vendor and form-factor words and the
memory size the preset already has (hardware); the organisation prefix, Instruct / chat / hf / it
variants and v0.x revisions (models). Nothing else is guessed: an H100 PCIe or a "-FP8" checkpoint
name stays unknown (precision is the client's ``dtype``), and the error lists the known names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_HW_WORDS = frozenset({"nvidia", "amd", "intel", "google", "geforce", "instinct", "tensor", "core", "gpu",
                       "sxm", "sxm4", "sxm5", "oam", "hbm2e", "hbm3", "hbm3e", "gddr6", "gddr6x"})
# a bare "A100" is the 80 GB part of today's published serving results (say A100-40GB for the other)
_HW_EXTRA = {"a100": "A100-80GB", "4090": "RTX-4090"}
_MODEL_WORDS = frozenset({"meta", "instruct", "chat", "hf", "it", "base"})
_REVISION = re.compile(r"v0\.\d+")
_QUANTISED = frozenset({"fp8", "int8", "int4", "awq", "gptq", "fp4", "nvfp4", "w8a8", "w4a16"})


def _words(name: str, separators: str) -> list[str]:
    return [w for w in re.split(separators, name.casefold()) if w]


def _hardware_key(name: str) -> str:
    return "".join(w for w in _words(name, r"[\s_\-/()]+") if w not in _HW_WORDS)


def _model_key(name: str) -> str:
    words = _words(name.rsplit("/", 1)[-1], r"[\s_\-]+")
    return "".join(w for w in words if w not in _MODEL_WORDS and not _REVISION.fullmatch(w))


def hardware_aliases(mem_gb: Mapping[str, float]) -> Callable[[str], str | None]:
    """Name -> preset (or None), for presets given as name -> memory (GB): a name matches a preset's
    key, or its key with the preset's memory size."""
    index = {k: v for k, v in _HW_EXTRA.items() if v in mem_gb}
    for name, gb in mem_gb.items():
        key = _hardware_key(name)
        index[key] = index[f"{key}{round(gb)}gb"] = name
    return lambda name: index.get(_hardware_key(name))


def model_aliases(names: list[str]) -> Callable[[str], str | None]:
    """Name -> preset (or None), for the model presets ``names`` (no two may share a key)."""
    index: dict[str, str] = {}
    for name in names:
        key = _model_key(name)
        if index.setdefault(key, name) != name:
            raise ValueError(f"model presets {index[key]} and {name} have the same key {key!r}")
    return lambda name: index.get(_model_key(name))


def unknown_hint(name: str) -> str:
    """What to say beside "unknown model": a quantised checkpoint's name is a model plus a dtype."""
    if any(w in _QUANTISED for w in _words(name, r"[\s_\-/.]+")):
        return " (a quantised checkpoint is the base model with a dtype, e.g. dtype: fp8)"
    return ""
