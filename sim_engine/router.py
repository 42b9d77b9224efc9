"""Built-in routing policies: pick the client that serves a request's stage.

All policies see the same interface, ``pick(candidates, request, now)``, so an
external decision maker (the ``external`` policy, answered over gRPC) can take
the place of any of them. Ties break on the candidate order, which is the order
of clients in the spec, so routing is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .client_api import Client, kv_total_blocks

if TYPE_CHECKING:
    from .request import Request


class Router:
    name = "base"

    def pick(self, candidates: Sequence[Client], req: Request, now: int) -> Client:
        raise NotImplementedError


class RoundRobin(Router):
    """Cycle through the candidates (one cycle per candidate set)."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next: dict[tuple[int, ...], int] = {}

    def pick(self, candidates, req, now):
        key = tuple(c.index for c in candidates)
        i = self._next.get(key, 0)
        self._next[key] = (i + 1) % len(candidates)
        return candidates[i % len(candidates)]


class LeastLoaded(Router):
    """Fewest KV blocks in use plus blocks the queued prompts will need, as a share of capacity
    (for clients without a KV cache: the fewest queued and running tasks)."""

    name = "least_loaded"

    def pick(self, candidates, req, now):
        def load(c: Client) -> float:
            total = kv_total_blocks(c)
            if not total:  # a task client has no KV: its queue is its load
                return float(c.load())
            bs = c.spec.scheduler.block_size
            queued = sum(-(-(r.prompt + r.generated) // bs) for r in c.waiting)
            return (c.kv_used_now(now) + queued) / total

        return min(candidates, key=load)


class JoinShortestQueue(Router):
    """Fewest requests queued or running."""

    name = "jsq"

    def pick(self, candidates, req, now):
        return min(candidates, key=_load)


def _load(c: Client) -> int:
    return c.load()


class PowerOfTwo(Router):
    """Sample two candidates at random, keep the one with the shorter queue."""

    name = "power_of_two"

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, candidates, req, now):
        if len(candidates) == 1:
            return candidates[0]
        a, b = self.rng.choice(len(candidates), 2, replace=False)
        ca, cb = candidates[int(a)], candidates[int(b)]
        return ca if (ca.load(), ca.index) <= (cb.load(), cb.index) else cb


def make_router(policy: str, rng: np.random.Generator) -> Router | None:
    """The built-in router for a policy name; None for ``external``."""
    if policy == "external":
        return None
    if policy == "round_robin":
        return RoundRobin()
    if policy == "least_loaded":
        return LeastLoaded()
    if policy == "jsq":
        return JoinShortestQueue()
    if policy == "power_of_two":
        return PowerOfTwo(rng)
    raise ValueError(policy)
