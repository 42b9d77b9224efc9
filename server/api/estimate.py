"""EstimateStep: the simulator's performance model as a stateless RPC (no session).

The client is validated exactly as a spec's `clients` entry (so presets, overrides, engine
profile, dtype and perf options mean the same), its perf model is built once per distinct client and kept
in a small LRU cache, and the batch is costed with the same `step` the LLM clients call.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from hermes.v1 import estimate_pb2

from ..errors import invalid
from . import wire
from .base import CallContext

MAX_BATCH_ENTRIES = 1 << 16  # prefill chunks + decodes per call: bounds the work of one call
MAX_TOKENS = 1 << 40  # any token count above this is a mistake, not a batch


@lru_cache(maxsize=64)
def _model(client_json: str) -> tuple[Any, int]:
    """(perf model, KV capacity in tokens) of a client document (canonical JSON)."""
    from sim_engine import SpecError
    from sim_engine.spec import LLM_ROLES, _clients, build_client_parts

    doc = json.loads(client_json)
    if "replicas" in doc:
        raise invalid("client.replicas", "not accepted: EstimateStep costs one instance")
    try:
        cs = _clients([doc])[0]
        if cs.role not in LLM_ROLES:
            raise SpecError("clients[0].role", f"must be an LLM role ({', '.join(LLM_ROLES)}), got {cs.role!r}")
        if "trace_path" in cs.perf_options:
            raise SpecError("clients[0].perf.trace_path", "not accepted over the wire (a path on the server)")
        model, capacity = build_client_parts(cs, "clients[0]")  # engine profile and dtype as in a session
    except SpecError as e:
        field = e.field.replace("clients[0]", "client", 1) if e.field.startswith("clients[0]") \
            else f"client.{e.field}"
        raise invalid(field, e.reason) from None
    return model, int(capacity)


class EstimateApi:
    def estimate_step(self, req: estimate_pb2.EstimateStepRequest,
                      call: CallContext) -> estimate_pb2.EstimateStepReply:
        if not req.HasField("client"):
            raise invalid("client", "missing (one entry of a spec's clients list)")
        n = len(req.prefills) + len(req.decode_context_tokens)
        if n == 0:
            raise invalid("prefills", "the batch is empty: give prefills and/or decode_context_tokens")
        if n > MAX_BATCH_ENTRIES:
            raise invalid("prefills", f"{n} batch entries; at most {MAX_BATCH_ENTRIES}")
        chunks = []
        for i, c in enumerate(req.prefills):
            if c.new_tokens < 1 or c.new_tokens > MAX_TOKENS:
                raise invalid(f"prefills[{i}].new_tokens", f"must be in 1..{MAX_TOKENS}, got {c.new_tokens}")
            if c.cached_tokens < 0 or c.cached_tokens > MAX_TOKENS:
                raise invalid(f"prefills[{i}].cached_tokens", f"must be in 0..{MAX_TOKENS}, got {c.cached_tokens}")
            chunks.append((int(c.cached_tokens), int(c.new_tokens)))
        ctx_sum = 0
        for i, t in enumerate(req.decode_context_tokens):
            if t < 0 or t > MAX_TOKENS:
                raise invalid(f"decode_context_tokens[{i}]", f"must be in 0..{MAX_TOKENS}, got {t}")
            ctx_sum += int(t)
        doc = wire.struct_to_plain(req.client, "client")
        model, capacity = _model(json.dumps(doc, sort_keys=True))
        cost = model.step(chunks, len(req.decode_context_tokens), ctx_sum)
        return estimate_pb2.EstimateStepReply(
            time_s=cost.time_s, compute_s=cost.compute_s, memory_s=cost.memory_s, comm_s=cost.comm_s,
            energy_j=cost.energy_j, compute_bound=cost.compute_bound, kv_capacity_tokens=capacity)
