"""Pipelines: the stages a request passes through, parsed from the spec.

A pipeline is a list of stages. Spec-level stages expand into executable parts:
``rag`` becomes embed -> search (-> rerank); ``reasoning`` configures the decode
of the LLM stage it follows (thinking tokens, parallel branches). Every part
is routed on its own, so an external router sees and places each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SpecError

# executable stage kinds, their metric group, and the client role that serves them
STAGE_ROLES = {
    "llm": ("both",),
    "prefill": ("prefill", "both"),
    "decode": ("decode", "both"),
    "embed": ("embedding",),
    "search": ("retrieval",),
    "rerank": ("embedding",),
    "kv_retrieval": ("prefill", "both"),
    "generic": ("generic",),
    "route": (),  # runs in the router itself, on no client
}
STAGE_GROUP = {"llm": "decode", "prefill": "prefill", "decode": "decode", "embed": "rag", "search": "rag",
               "rerank": "rag", "kv_retrieval": "kv_retrieval", "generic": "generic", "route": "route"}
SPEC_STAGE_KINDS = ("llm", "prefill", "decode", "rag", "kv_retrieval", "route", "reasoning", "generic", "include")
TEXT_BYTES_PER_TOKEN = 4  # retrieved documents and tool outputs travel as text


@dataclass(frozen=True)
class Stage:
    """One executable part of a pipeline."""

    kind: str
    group: str  # metric label: rag, kv_retrieval, route, prefill, decode, reasoning, generic
    params: dict = field(default_factory=dict, hash=False)


def _num(doc: dict, key: str, path: str, default: Any = None, integer: bool = False, minimum: float = 0.0,
         positive: bool = False) -> Any:
    v = doc.get(key, default)
    if v is None:
        raise SpecError(f"{path}.{key}", "missing")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecError(f"{path}.{key}", f"must be a number, got {v!r}")
    if integer and v != int(v):
        raise SpecError(f"{path}.{key}", f"must be an integer, got {v!r}")
    if v < minimum or (positive and v <= 0):
        raise SpecError(f"{path}.{key}", f"must be {'> 0' if positive else f'>= {minimum}'}, got {v}")
    return int(v) if integer else float(v)


def _check_keys(doc: dict, allowed: set[str], path: str) -> None:
    for key in doc:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", "unknown field")


def _latency(doc: Any, path: str) -> dict:
    """A latency distribution in milliseconds: fixed, uniform, normal or lognormal."""
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        doc = {"dist": "fixed", "ms": doc}
    if not isinstance(doc, dict):
        raise SpecError(path, "must be a number of ms or {dist: ..., ...}")
    dist = doc.get("dist", "fixed")
    if dist == "fixed":
        _check_keys(doc, {"dist", "ms"}, path)
        return {"dist": dist, "ms": _num(doc, "ms", path)}
    if dist == "uniform":
        _check_keys(doc, {"dist", "low_ms", "high_ms"}, path)
        lo, hi = _num(doc, "low_ms", path), _num(doc, "high_ms", path)
        if hi < lo:
            raise SpecError(f"{path}.high_ms", "must be >= low_ms")
        return {"dist": dist, "low_ms": lo, "high_ms": hi}
    if dist in ("normal", "lognormal"):
        _check_keys(doc, {"dist", "mean_ms", "std_ms", "sigma"}, path)
        out = {"dist": dist, "mean_ms": _num(doc, "mean_ms", path, positive=True)}
        if dist == "normal":
            out["std_ms"] = _num(doc, "std_ms", path, 0.0)
        else:
            out["sigma"] = _num(doc, "sigma", path, 0.5)
        return out
    raise SpecError(f"{path}.dist", f"unknown latency distribution {dist!r}; expected fixed, uniform, "
                    "normal or lognormal")


def _rag(doc: dict, path: str) -> list[Stage]:
    from .vector_search import parse_index

    _check_keys(doc, {"kind", "embed", "index", "rerank", "docs", "doc_tokens", "query_tokens"}, path)
    embed = doc.get("embed")
    if not isinstance(embed, dict) or not isinstance(embed.get("model"), str):
        raise SpecError(f"{path}.embed.model", "missing (the embedding model, e.g. e5-base)")
    _check_keys(embed, {"model"}, f"{path}.embed")
    if "index" not in doc:
        raise SpecError(f"{path}.index", "missing (the vector index to search)")
    index = parse_index(doc["index"], f"{path}.index")
    docs = _num(doc, "docs", path, index.k, integer=True, minimum=0)
    stages = [Stage("embed", "rag", {"model": embed["model"], "query_tokens": doc.get("query_tokens")}),
              Stage("search", "rag", {"index": index})]
    rerank = doc.get("rerank")
    if rerank is not None:
        if not isinstance(rerank, dict) or not isinstance(rerank.get("model"), str):
            raise SpecError(f"{path}.rerank.model", "missing (the cross-encoder model, e.g. bge-reranker-large)")
        _check_keys(rerank, {"model", "candidates"}, f"{path}.rerank")
        cand = _num(rerank, "candidates", f"{path}.rerank", index.k, integer=True, minimum=1)
        stages.append(Stage("rerank", "rag", {"model": rerank["model"], "candidates": cand,
                                              "doc_tokens": _num(doc, "doc_tokens", path, 512, integer=True)}))
    stages[-1].params["added_tokens"] = docs * _num(doc, "doc_tokens", path, 512, integer=True, minimum=0)
    return stages


def _route(doc: dict, path: str) -> Stage:
    _check_keys(doc, {"kind", "rules", "probabilities", "default", "latency"}, path)
    params: dict[str, Any] = {"latency": _latency(doc.get("latency", 0), f"{path}.latency")}
    if "probabilities" in doc:
        probs = doc["probabilities"]
        if not isinstance(probs, dict) or not probs:
            raise SpecError(f"{path}.probabilities", "must map model names to probabilities")
        total = 0.0
        for model in probs:
            total += _num(probs, model, f"{path}.probabilities")
        if abs(total - 1.0) > 1e-9:
            raise SpecError(f"{path}.probabilities", f"must sum to 1, got {total}")
        params["probabilities"] = dict(probs)
    else:
        rules = doc.get("rules", [])
        if not isinstance(rules, list):
            raise SpecError(f"{path}.rules", "must be a list")
        parsed = []
        for i, rule in enumerate(rules):
            rp = f"{path}.rules[{i}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("model"), str):
                raise SpecError(f"{rp}.model", "missing")
            _check_keys(rule, {"model", "prompt_tokens_gt", "output_tokens_gt", "difficulty_gt"}, rp)
            parsed.append(dict(rule))
        if not isinstance(doc.get("default"), str):
            raise SpecError(f"{path}.default", "missing (the model when no rule matches)")
        params["rules"] = parsed
        params["default"] = doc["default"]
    return Stage("route", "route", params)


def _reasoning(doc: dict, path: str) -> dict:
    _check_keys(doc, {"kind", "thinking_multiplier", "thinking_tokens", "branches", "first_k", "steps", "tool"},
                path)
    out = {"thinking_multiplier": _num(doc, "thinking_multiplier", path, 0.0)}
    if "thinking_tokens" in doc:
        from .spec import _length

        out["thinking_tokens"] = _length(doc["thinking_tokens"], f"{path}.thinking_tokens")
    out["branches"] = _num(doc, "branches", path, 1, integer=True, minimum=1)
    out["first_k"] = _num(doc, "first_k", path, out["branches"], integer=True, minimum=1)
    if out["first_k"] > out["branches"]:
        raise SpecError(f"{path}.first_k", f"must be <= branches ({out['branches']})")
    out["steps"] = _num(doc, "steps", path, 1, integer=True, minimum=1)
    if out["steps"] > 1:
        if out["branches"] > 1:
            raise SpecError(f"{path}.steps", "multi-step loops run one branch (set branches: 1)")
        tool = doc.get("tool")
        if not isinstance(tool, dict):
            raise SpecError(f"{path}.tool", "missing: a multi-step loop calls a tool between thinking steps "
                            "({latency: ..., tokens: N})")
        _check_keys(tool, {"latency", "tokens"}, f"{path}.tool")
        out["tool"] = {"latency": _latency(tool.get("latency", 0), f"{path}.tool.latency"),
                       "tokens": _num(tool, "tokens", f"{path}.tool", 0, integer=True)}
    return out


def _loop(llm: Stage, reasoning: dict) -> list[Stage]:
    """A multi-step reasoning loop: think, call a tool, think again with the grown context, ..., answer.

    Each thinking step is an llm stage on the same client (its earlier context stays cached
    there), so only the tool's output and the last token are prefilled again.
    """
    n = reasoning["steps"]
    stages: list[Stage] = []
    for i in range(n):
        if i:
            stages.append(Stage("generic", "generic", {"name": "tool", "latency": reasoning["tool"]["latency"],
                                                       "tokens": reasoning["tool"]["tokens"], "adds_tokens": True}))
        stages.append(Stage(llm.kind, "reasoning", {**llm.params, "reasoning": reasoning, "segment": i}))
    return stages


def parse_pipeline(doc: Any, path: str) -> tuple[Stage, ...]:
    """Validate one pipeline (a list of stage mappings) and expand it into executable stages."""
    if not isinstance(doc, list) or not doc:
        raise SpecError(path, "must be a non-empty list of stages")
    stages: list[Stage] = []
    for i, st in enumerate(doc):
        sp = f"{path}[{i}]"
        if isinstance(st, str):
            st = {"kind": st}
        if not isinstance(st, dict):
            raise SpecError(sp, "must be a mapping with a kind")
        kind = st.get("kind")
        if kind not in SPEC_STAGE_KINDS:
            raise SpecError(f"{sp}.kind", f"unknown stage {kind!r}; expected one of {', '.join(SPEC_STAGE_KINDS)}")
        if kind == "rag":
            stages.extend(_rag(st, sp))
        elif kind == "route":
            stages.append(_route(st, sp))
        elif kind == "generic":
            _check_keys(st, {"kind", "name", "latency", "tokens"}, sp)
            stages.append(Stage("generic", "generic", {
                "latency": _latency(st.get("latency", 0), f"{sp}.latency"), "name": st.get("name", "generic"),
                "tokens": _num(st, "tokens", sp, 0, integer=True)}))
        elif kind == "kv_retrieval":
            _check_keys(st, {"kind", "prefix_tokens"}, sp)
            stages.append(Stage("kv_retrieval", "kv_retrieval",
                                {"prefix_tokens": st.get("prefix_tokens")}))
        elif kind == "reasoning":
            prev = stages[-1] if stages else None
            if prev is None or prev.kind not in ("llm", "decode"):
                raise SpecError(f"{sp}.kind", "reasoning must follow an llm or decode stage (it shapes that decode)")
            reasoning = _reasoning(st, sp)
            if reasoning["steps"] > 1:
                if prev.kind != "llm":
                    raise SpecError(f"{sp}.steps", "multi-step loops follow an llm stage")
                stages[-1:] = _loop(prev, reasoning)
            else:
                stages[-1] = Stage(prev.kind, "reasoning", {**prev.params, "reasoning": reasoning})
        else:  # llm, prefill, decode
            _check_keys(st, {"kind", "kv_transfer"}, sp)
            params: dict[str, Any] = {}
            if kind == "decode":
                mode = st.get("kv_transfer", "whole")
                if mode not in ("whole", "layerwise"):
                    raise SpecError(f"{sp}.kv_transfer", f"must be whole or layerwise, got {mode!r}")
                params["kv_transfer"] = mode
            stages.append(Stage(kind, STAGE_GROUP[kind], params))
    kinds = [s.kind for s in stages]
    llm_like = [k for k in kinds if k in ("llm", "prefill", "decode")]
    if not llm_like:
        raise SpecError(path, "needs an llm stage (or prefill + decode)")
    for i, k in enumerate(kinds):
        if k == "prefill" and (i + 1 >= len(kinds) or kinds[i + 1] != "decode"):
            raise SpecError(f"{path}[{i}]", "a prefill stage must be followed by a decode stage")
        if k == "decode" and (i == 0 or kinds[i - 1] != "prefill"):
            raise SpecError(f"{path}[{i}]", "a decode stage must follow a prefill stage (or use kind: llm)")
        if k == "kv_retrieval" and (i + 1 >= len(kinds) or kinds[i + 1] not in ("llm", "prefill")):
            raise SpecError(f"{path}[{i}]", "kv_retrieval must come right before an llm or prefill stage")
    return tuple(stages)


DEFAULT_PIPELINE = (Stage("llm", "decode", {}),)


def _expand_includes(docs: dict, name: str, stack: tuple[str, ...]) -> list:
    """Stage documents of pipeline ``name`` with ``{kind: include, pipeline: other}`` spliced in."""
    out: list = []
    stages = docs[name]
    if not isinstance(stages, list):
        raise SpecError(f"pipelines.{name}", "must be a non-empty list of stages")
    for i, st in enumerate(stages):
        if isinstance(st, dict) and st.get("kind") == "include":
            other = st.get("pipeline")
            if other not in docs:
                raise SpecError(f"pipelines.{name}[{i}].pipeline", f"no pipeline named {other!r}")
            if other in stack + (name,):
                cycle = " -> ".join(stack + (name, other))
                raise SpecError(f"pipelines.{name}[{i}].pipeline", f"includes form a cycle: {cycle}")
            out.extend(_expand_includes(docs, other, stack + (name,)))
        else:
            out.append(st)
    return out


def parse_pipelines(doc: Any) -> dict[str, tuple[Stage, ...]]:
    """All pipelines of a spec by name (``default`` is a single llm stage unless defined)."""
    if doc is None:
        return {"default": DEFAULT_PIPELINE}
    if not isinstance(doc, dict) or not doc:
        raise SpecError("pipelines", "must map pipeline names to stage lists")
    out = {name: parse_pipeline(_expand_includes(doc, name, ()), f"pipelines.{name}") for name in doc}
    out.setdefault("default", DEFAULT_PIPELINE)
    return out


def route_options(st: Stage) -> list[str]:
    """The models a route stage may pick."""
    p = st.params
    if "probabilities" in p:
        return list(p["probabilities"])
    return list(dict.fromkeys([r["model"] for r in p["rules"]] + [p["default"]]))


def choose_model(st: Stage, req, rng) -> str:
    """Dynamic model routing: draw by probabilities, or the first rule the request matches."""
    p = st.params
    if "probabilities" in p:
        names = list(p["probabilities"])
        cum = np.cumsum([p["probabilities"][n] for n in names])
        return names[min(int(np.searchsorted(cum, rng.random(), "right")), len(names) - 1)]
    req.difficulty = float(rng.random())
    for rule in p["rules"]:
        if ("prompt_tokens_gt" not in rule or req.prompt > rule["prompt_tokens_gt"]) and \
           ("output_tokens_gt" not in rule or req.output > rule["output_tokens_gt"]) and \
           ("difficulty_gt" not in rule or req.difficulty > rule["difficulty_gt"]):
            return rule["model"]
    return p["default"]
