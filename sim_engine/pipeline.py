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
from .fields import Fields, show
from .lengths import check_length_range, parse_length
from .limits import (
    MAX_BRANCHES,
    MAX_DOCS,
    MAX_LATENCY_MS,
    MAX_MULTIPLIER,
    MAX_PIPELINES,
    MAX_SIGMA,
    MAX_STAGES,
    MAX_TOKENS,
)

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
LATENCY_DISTS = ("fixed", "uniform", "normal", "lognormal")


@dataclass(frozen=True)
class Stage:
    """One executable part of a pipeline."""

    kind: str
    group: str  # metric label: rag, kv_retrieval, route, prefill, decode, reasoning, generic
    params: dict = field(default_factory=dict, hash=False)


def _latency(doc: Any, path: str) -> dict:
    """A latency distribution in milliseconds: fixed, uniform, normal or lognormal."""
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        doc = {"dist": "fixed", "ms": doc}
    if not isinstance(doc, dict):
        raise SpecError(path, "must be a number of ms or {dist: ..., ...}")
    f = Fields(doc, path)
    dist = f.str("dist", "fixed", LATENCY_DISTS)
    if dist == "fixed":
        out = {"dist": dist, "ms": _ms(f, "ms")}
    elif dist == "uniform":
        lo, hi = _ms(f, "low_ms"), _ms(f, "high_ms")
        if hi < lo:
            raise SpecError(f"{path}.high_ms", "must be >= low_ms")
        out = {"dist": dist, "low_ms": lo, "high_ms": hi}
    else:  # normal, lognormal
        out = {"dist": dist, "mean_ms": _ms(f, "mean_ms", positive=True)}
        if dist == "normal":
            out["std_ms"] = f.float("std_ms", 0.0, maximum=MAX_LATENCY_MS)
        else:
            out["sigma"] = f.float("sigma", 0.5, maximum=MAX_SIGMA)
    f.done()
    return out


def _ms(f: Fields, key: str, positive: bool = False) -> float:
    value = f.float(key, None, positive=positive, maximum=MAX_LATENCY_MS)
    if value is None:
        raise SpecError(f.name(key), "missing")
    return value


def _rag(doc: dict, path: str) -> list[Stage]:
    from .vector_search import parse_index

    f = Fields(doc, path)
    f.raw("kind")
    embed = Fields(f.raw("embed") or {}, f"{path}.embed")
    embed_model = embed.str("model")
    if embed_model is None:
        raise SpecError(f"{path}.embed.model", "missing (the embedding model, e.g. e5-base)")
    embed.done()
    if "index" not in doc:
        raise SpecError(f"{path}.index", "missing (the vector index to search)")
    index = parse_index(f.raw("index"), f"{path}.index")
    docs = f.int("docs", index.k, minimum=0, maximum=MAX_DOCS)
    doc_tokens = f.int("doc_tokens", 512, minimum=0, maximum=MAX_TOKENS)
    query_tokens = f.int("query_tokens", None, maximum=MAX_TOKENS)
    stages = [Stage("embed", "rag", {"model": embed_model, "query_tokens": query_tokens}),
              Stage("search", "rag", {"index": index})]
    if f.raw("rerank") is not None:
        rerank = Fields(f.raw("rerank"), f"{path}.rerank")
        model = rerank.str("model")
        if model is None:
            raise SpecError(f"{path}.rerank.model", "missing (the cross-encoder model, e.g. bge-reranker-large)")
        cand = rerank.int("candidates", index.k, maximum=MAX_DOCS)
        rerank.done()
        stages.append(Stage("rerank", "rag", {"model": model, "candidates": cand, "doc_tokens": doc_tokens}))
    f.done()
    stages[-1].params["added_tokens"] = docs * doc_tokens
    return stages


def _route(doc: dict, path: str) -> Stage:
    f = Fields(doc, path)
    f.raw("kind")
    params: dict[str, Any] = {"latency": _latency(f.raw("latency", 0), f"{path}.latency")}
    if "probabilities" in doc:
        probs = f.raw("probabilities")
        if not isinstance(probs, dict) or not probs:
            raise SpecError(f"{path}.probabilities", "must map model names to probabilities")
        pf = Fields(probs, f"{path}.probabilities")
        total = 0.0
        for model in probs:
            if not isinstance(model, str):
                raise SpecError(pf.name(model), "must be a model name")
            total += pf.float(model, None, maximum=1.0)
        if abs(total - 1.0) > 1e-9:
            raise SpecError(f"{path}.probabilities", f"must sum to 1, got {total}")
        params["probabilities"] = dict(probs)
    else:
        rules = f.raw("rules", [])
        if not isinstance(rules, list):
            raise SpecError(f"{path}.rules", "must be a list")
        parsed = []
        for i, rule in enumerate(rules):
            rf = Fields(rule, f"{path}.rules[{i}]")
            model = rf.str("model")
            if model is None:
                raise SpecError(f"{path}.rules[{i}].model", "missing")
            out: dict[str, Any] = {"model": model}
            for key in ("prompt_tokens_gt", "output_tokens_gt"):
                if key in rule:
                    out[key] = rf.float(key, None, maximum=MAX_TOKENS)
            if "difficulty_gt" in rule:
                out["difficulty_gt"] = rf.float("difficulty_gt", None, maximum=1.0)
            rf.done()
            parsed.append(out)
        default = f.str("default")
        if default is None:
            raise SpecError(f"{path}.default", "missing (the model when no rule matches)")
        params["rules"] = parsed
        params["default"] = default
    f.done()
    return Stage("route", "route", params)


def _reasoning(doc: dict, path: str) -> dict:
    f = Fields(doc, path)
    f.raw("kind")
    out: dict[str, Any] = {"thinking_multiplier": f.float("thinking_multiplier", 0.0, maximum=MAX_MULTIPLIER)}
    if "thinking_tokens" in doc:
        where = f"{path}.thinking_tokens"
        out["thinking_tokens"] = check_length_range(parse_length(f.raw("thinking_tokens"), where), where)
    out["branches"] = f.int("branches", 1, maximum=MAX_BRANCHES)
    out["first_k"] = f.int("first_k", out["branches"], maximum=MAX_BRANCHES)
    if out["first_k"] > out["branches"]:
        raise SpecError(f"{path}.first_k", f"must be <= branches ({out['branches']})")
    out["steps"] = f.int("steps", 1, maximum=MAX_BRANCHES)
    tool_doc = f.raw("tool")
    if out["steps"] > 1:
        if out["branches"] > 1:
            raise SpecError(f"{path}.steps", "multi-step loops run one branch (set branches: 1)")
        if not isinstance(tool_doc, dict):
            raise SpecError(f"{path}.tool", "missing: a multi-step loop calls a tool between thinking steps "
                            "({latency: ..., tokens: N})")
        tool = Fields(tool_doc, f"{path}.tool")
        out["tool"] = {"latency": _latency(tool.raw("latency", 0), f"{path}.tool.latency"),
                       "tokens": tool.int("tokens", 0, minimum=0, maximum=MAX_TOKENS)}
        tool.done()
    f.done()
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
        if not isinstance(kind, str) or kind not in SPEC_STAGE_KINDS:
            raise SpecError(f"{sp}.kind", f"unknown stage {show(kind)}; expected one of {', '.join(SPEC_STAGE_KINDS)}")
        if kind == "rag":
            stages.extend(_rag(st, sp))
        elif kind == "route":
            stages.append(_route(st, sp))
        elif kind == "generic":
            f = Fields(st, sp)
            f.raw("kind")
            stages.append(Stage("generic", "generic", {
                "latency": _latency(f.raw("latency", 0), f"{sp}.latency"), "name": f.str("name", "generic"),
                "tokens": f.int("tokens", 0, minimum=0, maximum=MAX_TOKENS)}))
            f.done()
        elif kind == "kv_retrieval":
            f = Fields(st, sp)
            f.raw("kind")
            stages.append(Stage("kv_retrieval", "kv_retrieval",
                                {"prefix_tokens": f.int("prefix_tokens", None, minimum=0, maximum=MAX_TOKENS)}))
            f.done()
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
            f = Fields(st, sp)
            f.raw("kind")
            params: dict[str, Any] = {}
            if kind == "decode":
                params["kv_transfer"] = f.str("kv_transfer", "whole", ("whole", "layerwise"))
            f.done()
            stages.append(Stage(kind, STAGE_GROUP[kind], params))
        if len(stages) > MAX_STAGES:
            raise SpecError(sp, f"the pipeline expands to more than {MAX_STAGES} stages")
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
    """Stage documents of pipeline ``name`` with ``{kind: include, pipeline: other}`` spliced in.

    At most ``MAX_STAGES`` stage documents: includes of includes cannot grow exponentially.
    """
    out: list = []
    stages = docs[name]
    if not isinstance(stages, list):
        raise SpecError(f"pipelines.{name}", "must be a non-empty list of stages")
    for i, st in enumerate(stages):
        if isinstance(st, dict) and st.get("kind") == "include":
            inc = Fields(st, f"pipelines.{name}[{i}]")
            inc.raw("kind")
            other = inc.str("pipeline")
            inc.done()
            if other not in docs:
                raise SpecError(f"pipelines.{name}[{i}].pipeline", f"no pipeline named {show(other)}")
            if other in stack + (name,):
                cycle = " -> ".join(stack + (name, other))
                raise SpecError(f"pipelines.{name}[{i}].pipeline", f"includes form a cycle: {cycle}")
            out.extend(_expand_includes(docs, other, stack + (name,)))
        else:
            out.append(st)
        if len(out) > MAX_STAGES:
            raise SpecError(f"pipelines.{name}[{i}]", f"the pipeline expands to more than {MAX_STAGES} stages")
    return out


def parse_pipelines(doc: Any) -> dict[str, tuple[Stage, ...]]:
    """All pipelines of a spec by name (``default`` is a single llm stage unless defined)."""
    if doc is None:
        return {"default": DEFAULT_PIPELINE}
    if not isinstance(doc, dict) or not doc:
        raise SpecError("pipelines", "must map pipeline names to stage lists")
    if len(doc) > MAX_PIPELINES:
        raise SpecError("pipelines", f"more than {MAX_PIPELINES} pipelines")
    for name in doc:
        if not isinstance(name, str) or not name:
            raise SpecError(f"pipelines.{name}", "a pipeline name must be a non-empty string")
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


def output_bytes(st: Stage, nxt: Stage | None, prompt: int, generated: int, model: Any) -> int:
    """Bytes a finished stage hands to the next one: KV after a prefill, a vector, or text.

    ``model`` is the ModelArch of the client that ran the stage (None for clients without one).
    """
    if st.kind == "prefill":
        return int((prompt + generated - 1) * model.kv_bytes_per_token())
    if st.kind == "embed":
        return model.hidden * 4  # one fp32 query vector
    if st.kind == "search":
        if nxt is not None and nxt.kind == "rerank":  # candidate documents go to the re-ranker
            return nxt.params["candidates"] * nxt.params["doc_tokens"] * TEXT_BYTES_PER_TOKEN
        return st.params.get("added_tokens", 0) * TEXT_BYTES_PER_TOKEN
    if st.kind == "rerank":
        return st.params.get("added_tokens", 0) * TEXT_BYTES_PER_TOKEN
    if st.kind == "generic":
        return (st.params["tokens"] or generated) * TEXT_BYTES_PER_TOKEN
    if st.kind in ("llm", "decode"):
        return generated * TEXT_BYTES_PER_TOKEN
    return 0
