"""Iteration-level batch scheduling from outside: two policies for `scheduler.batching: external`.

    hermes serve --port 50051 &
    PYTHONPATH=. python examples/external_batcher.py --target 127.0.0.1:50051 --policy chunked

* `continuous` / `chunked`: vLLM-style continuous batching, exactly as the built-in
  `continuous` (whole prompts, prefills first) and `chunked` (running decodes first,
  chunked prefills fill the budget) policies; the newest request is preempted when
  the decodes' next KV blocks do not fit.
* `srf`: shortest-remaining-first: chunked, but waiting requests are admitted in order
  of the tokens they have left, and the request with the most left is preempted.

The policies read only the decision's fields, so they also run in-process on the
engine's own `BatchDecision` views (tests/test_external_batching.py does).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from client_sdk import Batch, BatchScheduler, Client  # noqa: E402


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _left(r: Any) -> int:
    """Prefill tokens a waiting or partly prefilled request has left."""
    return r.prefill_tokens - r.computed_tokens


class ContinuousBatcher(BatchScheduler):
    """vLLM-style continuous batching: the built-in `continuous` policy, or `chunked` with ``chunked=True``."""

    def __init__(self, chunked: bool = False) -> None:
        self.chunked = chunked

    def order(self, waiting: list[Any]) -> list[Any]:
        """Admission order of the waiting requests (FCFS)."""
        return waiting

    def victim(self, running: list[Any]) -> Any:
        """The request to preempt when KV runs short (the newest admitted)."""
        return running[-1]

    def batch(self, d: Any) -> Batch:
        running, waiting = list(d.running), list(d.waiting)
        free, preempt = d.free_blocks, []
        if self.chunked:
            free = self._make_room(running, free, preempt)
            return self._chunked_step(d, running, self.order(list(preempt[::-1]) + waiting), free, preempt)
        # continuous: whole prompts first; decode only when no prefill was admitted
        schedule = self._admit_whole(d, running, self.order(waiting), free)
        if schedule:
            return Batch(schedule)
        free = self._make_room(running, free, preempt)
        decodes = [(r.request_id, 1) for r in running if r.decoding]
        if not decodes:
            return Batch((), [r.request_id for r in preempt])
        return Batch(decodes, [r.request_id for r in preempt], repeat_decodes=not waiting and not preempt)

    def _make_room(self, running: list[Any], free: int, preempt: list[Any]) -> int:
        """Preempt until the running decodes' next KV blocks fit; returns the free blocks left."""
        while any(r.decoding for r in running) and sum(r.next_decode_blocks for r in running) > free:
            victim = self.victim(running)
            running.remove(victim)
            preempt.append(victim)
            free += victim.kv_blocks
        return free

    def _admit_whole(self, d: Any, running: list[Any], waiting: list[Any], free: int) -> list[tuple[str, int]]:
        budget, seqs, out = d.token_budget, sum(r.sequences for r in running), []
        for r in waiting:
            if seqs >= d.max_seqs or budget <= 0:
                break
            take = _left(r)
            if take > budget and not (r.generated_tokens > 0 and not out):
                break  # whole prompts only (a recompute may run alone)
            need = _ceil_div(r.computed_tokens + take, d.block_size)
            if need > free:
                break
            free -= need
            budget -= take
            seqs += 1
            out.append((r.request_id, take))
        return out

    def _chunked_step(self, d: Any, running: list[Any], waiting: list[Any], free: int,
                      preempt: list[Any]) -> Batch:
        bs = d.block_size
        decodes = [r for r in running if r.decoding]
        free -= sum(r.next_decode_blocks for r in decodes)
        budget = d.token_budget - sum(r.sequences for r in decodes)
        schedule = [(r.request_id, 1) for r in decodes]
        chunks = []
        for r in running:
            if r.decoding:
                continue
            if budget <= 0:
                break
            take = min(_left(r), budget, (r.kv_blocks + free) * bs - r.computed_tokens)
            if take <= 0:
                continue
            free -= _ceil_div(r.computed_tokens + take, bs) - r.kv_blocks
            budget -= take
            chunks.append((r.request_id, take))
        seqs = sum(r.sequences for r in running)
        for r in waiting:
            if seqs >= d.max_seqs or budget <= 0:
                break
            computed = 0 if r in preempt else r.computed_tokens
            take = min(r.prefill_tokens - computed, budget)
            need = _ceil_div(computed + take, bs)
            if need > free:
                break
            free -= need
            budget -= take
            seqs += 1
            chunks.append((r.request_id, take))
        victims = [r.request_id for r in preempt]
        if not chunks and not decodes and any(not r.decoding for r in running):
            return Batch((), victims + [self.victim(running).request_id])  # stuck partial prefills: recompute one
        return Batch(chunks + schedule, victims, repeat_decodes=bool(decodes) and not chunks)


class ShortestRemainingFirst(ContinuousBatcher):
    """Chunked batching that admits the request with the fewest tokens left first and preempts the longest."""

    def __init__(self) -> None:
        super().__init__(chunked=True)

    @staticmethod
    def _remaining(r: Any) -> int:
        return _left(r) + r.output_tokens - r.generated_tokens

    def order(self, waiting: list[Any]) -> list[Any]:
        return sorted(waiting, key=lambda r: (self._remaining(r), r.arrival_ns))

    def victim(self, running: list[Any]) -> Any:
        return max(reversed(running), key=self._remaining)


POLICIES = {
    "continuous": lambda: ContinuousBatcher(chunked=False),
    "chunked": lambda: ContinuousBatcher(chunked=True),
    "srf": ShortestRemainingFirst,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT of a hermes server")
    p.add_argument("--policy", choices=sorted(POLICIES), default="chunked")
    p.add_argument("--preset", default="llama3-8b-h100", help="spec preset with a workload")
    p.add_argument("--requests", type=int, default=100, help="workload.num_requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--token", default=None, help="bearer token, if the server requires one")
    p.add_argument("--stream", action="store_true", help="drive the session over the bidirectional stream")
    args = p.parse_args(argv)

    overrides = {"clients[0].scheduler.batching": "external", "workload.num_requests": args.requests}
    with Client(args.target, token=args.token) as client:
        with client.create_session(args.preset, seed=args.seed, overrides=overrides, stream=args.stream) as s:
            summary = POLICIES[args.policy]().run(s)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
