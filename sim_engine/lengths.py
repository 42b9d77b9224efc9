"""Token-length distributions of a spec (prompt, output, thinking tokens), parsed in one place.

Why a module of its own: the workload (``workload.prompt_tokens``) and the pipelines
(``reasoning.thinking_tokens``) both take a length distribution, so neither spec.py nor
pipeline.py may own the parser without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .fields import Fields
from .limits import MAX_SIGMA, MAX_TOKENS

LENGTH_DISTS = ("fixed", "normal", "lognormal", "uniform", "empirical")


@dataclass(frozen=True)
class LengthSpec:
    dist: str
    params: dict
    minimum: int = 1
    maximum: int | None = None


def parse_length(doc: Any, path: str) -> LengthSpec | None:
    """A length distribution (a bare number is ``fixed``); None when the field is absent."""
    if doc is None:
        return None
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        doc = {"dist": "fixed", "value": doc}
    f = Fields(doc, path)
    dist = f.str("dist", "fixed", LENGTH_DISTS)
    params: dict[str, Any] = {}
    if dist == "fixed":
        params["value"] = f.int("value", None)
        if params["value"] is None:
            raise SpecError(f"{path}.value", "missing")
    elif dist == "normal":
        params["mean"] = f.float("mean", None, positive=True)
        params["std"] = f.float("std", 0.0)
        if params["mean"] is None:
            raise SpecError(f"{path}.mean", "missing")
    elif dist == "lognormal":
        params["mean"] = f.float("mean", None, positive=True)
        params["sigma"] = f.float("sigma", None)
        if params["mean"] is None or params["sigma"] is None:
            raise SpecError(f"{path}.{'mean' if params['mean'] is None else 'sigma'}", "missing")
    elif dist == "uniform":
        params["low"] = f.int("low", None)
        params["high"] = f.int("high", None)
        if params["low"] is None or params["high"] is None:
            raise SpecError(f"{path}.{'low' if params['low'] is None else 'high'}", "missing")
        if params["high"] < params["low"]:
            raise SpecError(f"{path}.high", "must be >= low")
    else:  # empirical
        values = f.raw("values")
        source = f.raw("trace")
        if values is None and source is None:
            raise SpecError(f"{path}.values", "missing (give values: [...] or trace: NAME_OR_PATH)")
        if values is not None:
            if not isinstance(values, list) or not values or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
            ):
                raise SpecError(f"{path}.values", "must be a non-empty list of positive integers")
            params["values"] = list(values)
        else:
            params["trace"] = f.str("trace")
            params["column"] = f.str("column", "num_prefill_tokens")
    minimum = f.int("min", 1)
    maximum = f.int("max", None)
    if maximum is not None and maximum < minimum:
        raise SpecError(f"{path}.max", f"must be >= min ({minimum})")
    f.done()
    return LengthSpec(dist, params, minimum, maximum)


def check_length_range(ls: LengthSpec | None, path: str) -> LengthSpec | None:
    """Token lengths stay within [1, MAX_TOKENS] (the parser checks the shape, this the range)."""
    if ls is None:
        return None
    limits = {"value": MAX_TOKENS, "mean": MAX_TOKENS, "std": MAX_TOKENS, "low": MAX_TOKENS,
              "high": MAX_TOKENS, "sigma": MAX_SIGMA}
    for key, top in limits.items():
        v = ls.params.get(key)
        if v is not None and not (v <= top):
            raise SpecError(f"{path}.{key}", f"must be <= {top:g}, got {v}")
    values = ls.params.get("values")
    if values is not None and max(values) > MAX_TOKENS:
        raise SpecError(f"{path}.values", f"every value must be <= {MAX_TOKENS}")
    column = ls.params.get("column")
    if column is not None and column not in ("num_prefill_tokens", "num_decode_tokens"):
        raise SpecError(f"{path}.column", "must be num_prefill_tokens or num_decode_tokens")
    for key, v in (("min", ls.minimum), ("max", ls.maximum)):
        if v is not None and v > MAX_TOKENS:
            raise SpecError(f"{path}.{key}", f"must be <= {MAX_TOKENS}, got {v}")
    return ls
