"""A GPU prefix cache: freed KV blocks that keep their content until their memory is reused.

Why: vLLM V1 (automatic prefix caching, on by default) and SGLang (radix cache) do not wipe a
request's KV blocks when it ends or is preempted. The blocks go to a least-recently-freed queue,
count as free memory, and a later request whose leading tokens are the same takes them back
instead of recomputing them, until an allocation evicts them (oldest first).

Content is named exactly, without hashing tokens: ``("p", prefix_key)`` for the blocks of a
shared prompt prefix, ``("r", request index)`` for a request's own blocks (what a preempted
request finds when it is re-admitted). Each name has one cached run ``[lo, hi)`` of block
indices; the runs are kept least recently freed first. Evicting trims the oldest run from its
tail, as vLLM frees a request's blocks tail first so they leave the free queue first. All
operations are O(1) amortised whatever the block count, so block size 1 (SGLang) stays cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class PrefixCache:
    """Cached (evictable, reusable) KV blocks of one client; ``blocks`` is how many there are."""

    __slots__ = ("runs", "blocks")

    def __init__(self) -> None:
        self.runs: OrderedDict[Hashable, list[int]] = OrderedDict()
        self.blocks = 0

    def put(self, owner: Hashable, lo: int, hi: int) -> None:
        """Blocks ``lo..hi-1`` of ``owner`` were freed with their content (now the most recent).

        A run already cached for ``owner`` that touches the new one is merged with it (blocks
        holding the same content twice are freed as plain memory); one that does not touch it
        is dropped.
        """
        if hi <= lo:
            return
        run = self.runs.pop(owner, None)
        if run is not None:
            self.blocks -= run[1] - run[0]
            if run[0] <= hi and lo <= run[1]:
                lo, hi = min(lo, run[0]), max(hi, run[1])
        self.runs[owner] = [lo, hi]
        self.blocks += hi - lo

    def peek(self, owner: Hashable, start: int, limit: int) -> int:
        """End of the cached run of ``owner`` from block ``start`` up to ``limit`` (``start``: none)."""
        run = self.runs.get(owner)
        if run is None or not run[0] <= start < run[1]:
            return start
        return max(start, min(run[1], limit))

    def take(self, owner: Hashable, start: int, end: int) -> None:
        """Blocks ``start..end-1`` of ``owner`` (found by ``peek``) go back into use.

        Cached blocks of the run before ``start`` can no longer lead a lookup: they are freed.
        """
        if end <= start:
            return
        run = self.runs[owner]
        self.blocks -= end - run[0]
        run[0] = end
        if run[0] >= run[1]:
            del self.runs[owner]

    def evict(self, n: int) -> None:
        """Evict ``n`` blocks (at most ``blocks``), least recently freed first."""
        self.blocks -= n
        runs = self.runs
        while n:
            run = runs[next(iter(runs))]
            k = run[1] - run[0]
            if k > n:
                run[1] -= n
                return
            n -= k
            runs.popitem(last=False)

    def discard(self, owner: Hashable) -> None:
        """Forget the cached blocks of ``owner`` (they become plain free memory)."""
        run = self.runs.pop(owner, None)
        if run is not None:
            self.blocks -= run[1] - run[0]

    def clear(self) -> None:
        self.runs.clear()
        self.blocks = 0
