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
