"""The discrete-event kernel: an integer-nanosecond clock and an ordered event heap.

Events are ordered by (time, priority, sequence). The priority orders the kinds
of work that fall on the same nanosecond so that results never depend on the
order in which events happened to be scheduled:

* ``PRIO_STATE``   step ends and transfers finish (state becomes true first),
* ``PRIO_INPUT``   arrivals, wake-ups, cluster changes (they see that state),
* ``PRIO_DECIDE``  clients pick their next batch (after everything at that instant).

The sequence number makes every run bit-for-bit deterministic.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

PRIO_STATE = 0
PRIO_INPUT = 1
PRIO_DECIDE = 2


class Kernel:
    """A clock plus a heap of pending callbacks; knows nothing about LLMs."""

    __slots__ = ("now", "_heap", "_seq", "events_processed")

    def __init__(self) -> None:
        self.now: int = 0
        self._heap: list[tuple[int, int, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.events_processed = 0

    def schedule(self, time_ns: int, prio: int, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at ``time_ns`` (never earlier than now)."""
        if time_ns < self.now:
            raise ValueError(f"event scheduled in the past: {time_ns} < {self.now}")
        self._seq += 1
        heapq.heappush(self._heap, (time_ns, prio, self._seq, fn, arg))

    def next_time(self) -> int | None:
        """Time of the earliest pending event, or None when idle."""
        return self._heap[0][0] if self._heap else None

    def pop_and_run(self) -> None:
        """Advance the clock to the earliest event and run it."""
        time_ns, _prio, _seq, fn, arg = heapq.heappop(self._heap)
        self.now = time_ns
        self.events_processed += 1
        fn(arg)

    def __len__(self) -> int:
        return len(self._heap)

    def run_batch(self, n: int) -> int:
        """Run up to ``n`` events in order (fewer when the heap empties); returns how many ran."""
        heap, pop = self._heap, heapq.heappop
        for i in range(n):
            if not heap:
                return i
            time_ns, _prio, _seq, fn, arg = pop(heap)
            self.now = time_ns
            self.events_processed += 1
            fn(arg)
        return n

    def run_until(self, until_ns: int | None, max_events: int | None,
                  halted: Callable[[], bool]) -> tuple[int, str]:
        """Run events up to ``until_ns`` (inclusive), at most ``max_events``, until ``halted()`` after one.

        Returns (events run, why it stopped): ``"halted"``, ``"bound"`` (max_events reached with
        events left to run) or ``"drained"`` (no event left at or before ``until_ns``).
        """
        heap = self._heap
        processed = 0
        while heap:
            if until_ns is not None and heap[0][0] > until_ns:
                break
            if max_events is not None and processed >= max_events:
                return processed, "bound"
            self.pop_and_run()
            processed += 1
            if halted():
                return processed, "halted"
        return processed, "drained"

    def move_clock(self, time_ns: int) -> None:
        """Set the clock forward to ``time_ns`` (nothing may be pending before it)."""
        if time_ns < self.now or (self._heap and self._heap[0][0] < time_ns):
            raise ValueError(f"cannot move the clock to {time_ns}: now {self.now}, next event {self.next_time()}")
        self.now = time_ns
