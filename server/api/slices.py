"""Advance in slices, so a long run can return early (deadline near, server draining).

The engine's `advance` runs until a stop condition; here it is called with a
bound of SLICE_EVENTS kernel events at a time and resumed while the stop
reason is only that bound. Between slices the server checks whether to
return early (client cancelled or gone, deadline near, the per-call wall
budget spent, the session closed, the server draining); the result is the
same as one uninterrupted call, and an interrupted one stops at a consistent
point (a slice boundary) from which the next Advance continues.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SLICE_EVENTS = 2000


@dataclass
class AdvanceOutcome:
    time_ns: int
    reason: str  # a StopReason name: TARGET_REACHED, ..., EVENT_BOUND, INTERRUPTED
    events: list[Any]
    events_processed: int


def advance(sim: Any, until_ns: int | None, next_event: bool, bound: int | None,
            interrupted: Callable[[], bool],
            after_slice: Callable[[int], None] | None = None) -> AdvanceOutcome:
    """Run `sim` until `until_ns` (None: until a stop condition), at most `bound` kernel events.

    `after_slice(time_ns)` runs after every slice (the server keeps the session's clock
    fresh for GetSession with it).
    """
    if next_event:
        r = sim.advance(until_ns=until_ns, max_events=bound, next_event=True)
        return AdvanceOutcome(r.time_ns, r.reason.name, r.events, r.events_processed)
    events: list[Any] = []
    done = 0
    while True:
        step = SLICE_EVENTS if bound is None else min(SLICE_EVENTS, bound - done)
        r = sim.advance(until_ns=until_ns, max_events=step)
        events.extend(r.events)
        done += r.events_processed
        reason = r.reason.name
        if after_slice is not None:
            after_slice(r.time_ns)
        if reason != "EVENT_BOUND" or (bound is not None and done >= bound):
            return AdvanceOutcome(r.time_ns, reason, events, done)
        if interrupted():
            return AdvanceOutcome(r.time_ns, "INTERRUPTED", events, done)
