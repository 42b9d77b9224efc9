"""Batch decisions: a client with ``batching: external`` asks from outside what its next step runs.

The view and the checks read the LLM client's aggregate state (decode counter, block
phases, held blocks) without changing it, so a bad answer is rejected whole, naming the
field, before anything is applied; applying a checked plan is the client's job
(``LLMClient.apply_batch``).

Rules an answer must keep (each broken one is a ``SpecError`` naming the field):
* every id is a request waiting or running on this client, listed at most once per list;
* a decoding request processes exactly 1 token (per sequence); a prefill chunk 1..(tokens
  left to prefill); a request preempted by the same answer may be scheduled again from
  the start of its recompute (as the built-in policies do when it fits);
* the running decodes step together: a step decodes every one not preempted, or none;
* total tokens <= the token budget (a lone recompute may exceed it, as the built-in
  whole-prompt policies allow); sequences after admission <= max_seqs;
* the step's new KV blocks (decode growth + chunks) fit in the free blocks after preemption
  (under reserve admission, new requests' whole reservations fit beside the others');
* ``repeat_decodes`` only for a decode-only step.
"""

from __future__ import annotations

from .errors import SpecError, UnknownReferenceError
from .llm_client import BatchPlan, LLMClient
from .request import Request
from .views import BatchAnswer, BatchDecision, BatchItem, BatchRequestView


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _seqs(req: Request) -> list[Request]:
    """The live decode sequences of a running request (itself, or its reasoning branches)."""
    if req.live:
        return [req]
    return [c for c in req.children or () if c.live]


def running_requests(c: LLMClient) -> list[Request]:
    """Requests admitted on ``c`` (decoding or partly prefilled), oldest admission first."""
    reqs = list(dict.fromkeys(s.parent or s for s in c.decoding.values())) + c.prefilling
    return sorted(reqs, key=lambda r: r.admit_seq)


def waiting_requests(c: LLMClient) -> list[Request]:
    """Waiting requests the answer may schedule (a KV transfer's decode is admitted by the engine)."""
    return [r for r in c.waiting if r.mode != "decode"]


def held_blocks(c: LLMClient, req: Request) -> int:
    """KV blocks ``req`` holds on ``c`` (what preempting it frees)."""
    return req.blocks + sum(_ceil_div(s.base + c.G, c.bs) - s.shared for s in _seqs(req))


def next_decode_blocks(c: LLMClient, req: Request) -> int:
    """New KV blocks ``req``'s sequences take at the next decode step (new blocks and branch copies)."""
    return sum(((s.base + c.G) % c.bs == 0) + (s in c.cow) for s in _seqs(req))


def _view(c: LLMClient, req: Request, rid: str) -> BatchRequestView:
    seqs = _seqs(req)
    if seqs:  # prefill_tokens: what a preemption now would re-prefill
        s = seqs[0]
        computed, generated = s.base + c.G, s.target - (s.finish_g - c.G)
        gen, extra, _ = c.resume_point(req)
        prefill = req.prompt + gen + extra
    else:
        computed, generated, prefill = req.prefilled, req.generated, c._prefill_len(req)
    return BatchRequestView(
        request_id=rid, prompt_tokens=req.prompt, output_tokens=req.target,
        prefill_tokens=prefill, computed_tokens=computed, generated_tokens=generated,
        prefix_key=req.prefix_key, arrival_ns=req.arrival_ns, decoding=bool(seqs), sequences=len(seqs) or 1,
        kv_blocks=held_blocks(c, req), next_decode_blocks=next_decode_blocks(c, req) if seqs else 0)


def batch_view(c: LLMClient, decision_id: int, now: int, request_id) -> BatchDecision:
    """What client ``c`` shows the outside scheduler at a step boundary."""
    return BatchDecision(
        decision_id=decision_id, client_id=c.id, time_ns=now, token_budget=c.budget, max_seqs=c.max_seqs,
        block_size=c.bs, free_blocks=c.total_blocks - c.used_blocks, total_blocks=c.total_blocks,
        waiting=tuple(_view(c, r, request_id(r)) for r in waiting_requests(c)),
        running=tuple(_view(c, r, request_id(r)) for r in running_requests(c)))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_batch(c: LLMClient, a: BatchAnswer, request_id) -> BatchPlan:
    """Validate answer ``a`` for client ``c``; returns the plan. Changes nothing."""
    if not isinstance(a.repeat_decodes, bool):
        raise SpecError("repeat_decodes", f"must be a boolean, got {a.repeat_decodes!r}")
    running = {request_id(r): r for r in running_requests(c)}
    waiting = {request_id(r): r for r in waiting_requests(c)}
    where = f"on client {c.id!r}"

    preempt: list[Request] = []
    seen: set[str] = set()
    for i, rid in enumerate(a.preempt):
        path = f"preempt[{i}]"
        if not isinstance(rid, str):
            raise SpecError(path, f"must be a request id, got {rid!r}")
        if rid in seen:
            raise SpecError(path, f"request {rid!r} is listed twice")
        seen.add(rid)
        if rid in waiting:
            raise SpecError(path, f"request {rid!r} is waiting, not running, {where}")
        if rid not in running:
            raise UnknownReferenceError(path, f"request {rid!r} is not running {where}")
        preempt.append(running[rid])

    chunks: list[tuple[Request, int, bool]] = []
    decodes: set[str] = set()
    listed: set[str] = set()
    total = 0
    for i, item in enumerate(a.schedule):
        path = f"schedule[{i}]"
        if not isinstance(item, BatchItem):
            raise SpecError(path, f"must be a BatchItem, got {type(item).__name__}")
        rid, tokens = item.request_id, item.tokens
        if not isinstance(rid, str):
            raise SpecError(f"{path}.request_id", f"must be a request id, got {rid!r}")
        if rid in listed:
            raise SpecError(f"{path}.request_id", f"request {rid!r} is listed twice")
        listed.add(rid)
        req = running.get(rid) or waiting.get(rid)
        if req is None:
            raise UnknownReferenceError(f"{path}.request_id", f"request {rid!r} is not waiting or running {where}")
        if not _is_int(tokens):
            raise SpecError(f"{path}.tokens", f"must be an integer, got {tokens!r}")
        if rid in seen:  # preempted first: it starts its recompute again from nothing
            gen, extra, _ = c.resume_point(req)
            left, new = req.prompt + gen + extra, True
        elif _seqs(req):
            if tokens != 1:
                raise SpecError(f"{path}.tokens", f"request {rid!r} is decoding: it takes exactly 1 token, "
                                f"got {tokens}")
            decodes.add(rid)
            total += len(_seqs(req))
            continue
        else:
            left, new = c._prefill_len(req) - req.prefilled, rid in waiting
        if not 1 <= tokens <= left:
            raise SpecError(f"{path}.tokens", f"request {rid!r} has {left} tokens left to prefill; "
                            f"a chunk takes 1..{left}, got {tokens}")
        chunks.append((req, tokens, new))
        total += tokens

    kept = [rid for rid, r in running.items() if _seqs(r) and rid not in seen]
    if decodes:
        missing = [rid for rid in kept if rid not in decodes]
        if missing:
            raise SpecError("schedule", f"running decode {missing[0]!r} is missing: a step decodes every "
                            "running sequence or none (preempt the ones to pause)")
    if a.repeat_decodes and (chunks or not decodes):
        raise SpecError("repeat_decodes", "only for a decode-only step (the schedule lists only decodes)")
    lone_recompute = len(chunks) == 1 and not decodes and chunks[0][2] and chunks[0][0].generated > 0
    if total > c.budget and not lone_recompute:
        raise SpecError("schedule", f"{total} tokens exceed the token budget of {c.budget}")

    admitted = [r for r, _, new in chunks if new]
    if admitted:
        gone = sum(len(_seqs(r)) or 1 for r in preempt)
        seqs = len(c.decoding) + len(c.prefilling) - gone + len(admitted)
        if seqs > c.max_seqs:
            raise SpecError("schedule", f"{seqs} running sequences would exceed max_seqs {c.max_seqs}")

    free = c.total_blocks - c.used_blocks + sum(held_blocks(c, r) for r in preempt)
    need = sum(next_decode_blocks(c, running[rid]) for rid in decodes)
    need += sum(_ceil_div(t, c.bs) if r in preempt else _ceil_div(r.prefilled + t, c.bs) - r.blocks
                for r, t, _ in chunks)
    if need > free:
        raise SpecError("schedule", f"the step needs {need} new KV blocks; {free} are free"
                        + (" after preemption" if preempt else ""))
    if c.reserve and admitted:
        room = c.total_blocks - c.committed + sum(r.reserved for r in preempt)
        cost = sum(c._reservation(r, r.prompt + sum(c.resume_point(r)[:2]) if r in preempt else c._prefill_len(r))
                   for r in admitted)
        if cost > room:
            raise SpecError("schedule", f"reserve admission: the new requests reserve {cost} KV blocks; "
                            f"{room} are unreserved")
    return BatchPlan(preempt, chunks, bool(decodes), a.repeat_decodes)
