"""Links of finite bandwidth shared by concurrent transfers (max-min fair).

Why not "latency + size / bandwidth" per transfer (the MIST coordinator's model, which
ignores congestion)? Because KV hand-offs, retrieved contexts and remote-KV fetches of many
requests cross the same NIC / PCIe / DCN links at once, and their latency depends on how
the link is shared. This module models that sharing with the classic fluid model:

* A transfer crosses a path of links. It first waits the sum of the links' latencies (pure
  propagation/setup delay, no bandwidth used), then its bytes flow.
* Flowing transfers get max-min fair rates, computed by progressive filling: find the link
  whose remaining capacity divided by its unfixed transfers is smallest, give each of those
  transfers that share, subtract it on every link they cross, and repeat.
* Rates are recomputed whenever a transfer enters or leaves its data phase; between such
  changes every rate is constant, so finish times are exact (up to integer ns rounding).

Time is integer nanoseconds. Remaining bytes are floats; each finish time is rounded *up*
to the next nanosecond so a transfer never completes before its bytes are through. The
whole network keeps a single pending "next completion" kernel event; a version counter
makes superseded events no-ops. Ties (equal shares, equal finish times) resolve by link
insertion order and transfer start order, so runs are deterministic.

Units: ``bandwidth_gbs`` is decimal GB/s, i.e. exactly bytes per nanosecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim_engine.kernel import PRIO_STATE, Kernel

# Tolerance (ns) when rounding a float finish time up: absorbs float noise such as
# 1000.0000000001 without ever making a transfer meaningfully early.
_CEIL_SLACK_NS = 1e-6


@dataclass
class _Link:
    link_id: str
    bw: float  # bytes per ns (== decimal GB/s)
    latency_ns: int
    done_bytes: int = 0  # bytes of transfers that finished crossing this link
    active: int = 0  # transfers in their data phase on this link
    busy_ns: int = 0  # accumulated time with active > 0 (closed intervals)
    busy_since: int = 0  # start of the current busy interval when active > 0


@dataclass
class _Transfer:
    tid: int
    links: list[_Link]
    nbytes: int
    on_done: Callable[[Any], None]
    arg: Any
    remaining: float = 0.0
    rate: float = 0.0  # bytes per ns
    finish_ns: int = 0
    flowing: bool = False


class Network:
    """A set of links plus the transfers in flight over them."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._links: dict[str, _Link] = {}
        self._transfers: dict[int, _Transfer] = {}  # every transfer not yet completed
        self._flowing: dict[int, _Transfer] = {}  # data phase, insertion (= start) order
        self._next_id = 0
        self._version = 0
        self._last_ns = 0  # time up to which `remaining` of flowing transfers is accounted

    # --- topology -----------------------------------------------------------------------
    def add_link(self, link_id: str, bandwidth_gbs: float, latency_us: float) -> None:
        """Add a link of ``bandwidth_gbs`` decimal GB/s and ``latency_us`` one-way latency."""
        if link_id in self._links:
            raise ValueError(f"duplicate link id {link_id!r}")
        if not bandwidth_gbs > 0 or not math.isfinite(bandwidth_gbs):
            raise ValueError(f"link {link_id!r}: bandwidth must be positive, got {bandwidth_gbs!r}")
        if not latency_us >= 0 or not math.isfinite(latency_us):
            raise ValueError(f"link {link_id!r}: latency must be >= 0, got {latency_us!r}")
        self._links[link_id] = _Link(link_id, float(bandwidth_gbs), round(latency_us * 1000.0))

    def has_link(self, link_id: str) -> bool:
        return link_id in self._links

    # --- transfers ----------------------------------------------------------------------
    def start(self, links: list[str], nbytes: int, on_done: Callable[[Any], None], arg: Any) -> int:
        """Start moving ``nbytes`` over ``links`` now; ``on_done(arg)`` fires when they arrive.

        Returns the transfer id. An empty path completes at once (via an event at now);
        zero bytes complete after the path latency.
        """
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        path: list[_Link] = []
        for lid in links:
            link = self._links.get(lid)
            if link is None:
                raise ValueError(f"unknown link {lid!r}")
            if link in path:
                raise ValueError(f"link {lid!r} appears twice in the path")
            path.append(link)
        self._next_id += 1
        t = _Transfer(self._next_id, path, int(nbytes), on_done, arg, remaining=float(nbytes))
        self._transfers[t.tid] = t
        latency = sum(link.latency_ns for link in path)
        self.kernel.schedule(self.kernel.now + latency, PRIO_STATE, self._begin_data, t)
        return t.tid

    def active(self) -> int:
        """Transfers started and not yet completed (latency or data phase)."""
        return len(self._transfers)

    def link_stats(self, now_ns: int) -> dict[str, dict]:
        """Per link: bytes_moved, busy_ns (time with >= 1 flowing transfer), utilization.

        ``utilization`` = bytes_moved / (bandwidth * now_ns); partial progress of flowing
        transfers up to ``now_ns`` is included.
        """
        dt = max(0, now_ns - self._last_ns)
        partial: dict[str, float] = {}
        for t in self._flowing.values():
            moved = t.nbytes - max(0.0, t.remaining - t.rate * dt)
            for link in t.links:
                partial[link.link_id] = partial.get(link.link_id, 0.0) + moved
        out: dict[str, dict] = {}
        for lid, link in self._links.items():
            moved = link.done_bytes + partial.get(lid, 0.0)
            busy = link.busy_ns + (max(0, now_ns - link.busy_since) if link.active else 0)
            out[lid] = {
                "bytes_moved": moved,
                "busy_ns": busy,
                "utilization": moved / (link.bw * now_ns) if now_ns > 0 else 0.0,
                "bandwidth_gbs": link.bw,
                "active": link.active,
            }
        return out

    # --- internals ----------------------------------------------------------------------
    def _begin_data(self, t: _Transfer) -> None:
        """Latency elapsed: join the data phase (or finish, if there is nothing to send)."""
        if t.nbytes == 0 or not t.links:
            del self._transfers[t.tid]
            t.on_done(t.arg)
            return
        now = self.kernel.now
        self._advance(now)
        t.flowing = True
        self._flowing[t.tid] = t
        for link in t.links:
            if link.active == 0:
                link.busy_since = now
            link.active += 1
        self._reallocate(now)

    def _on_tick(self, version: int) -> None:
        """The earliest finish time is reached: retire finished transfers, then notify."""
        if version != self._version:
            return  # superseded by a later reallocation
        now = self.kernel.now
        self._advance(now)
        done = [t for t in self._flowing.values() if t.finish_ns <= now]  # start order
        for t in done:
            del self._flowing[t.tid]
            del self._transfers[t.tid]
            t.remaining = 0.0
            t.flowing = False
            for link in t.links:
                link.done_bytes += t.nbytes
                link.active -= 1
                if link.active == 0:
                    link.busy_ns += now - link.busy_since
        self._reallocate(now)
        for t in done:  # after the state is consistent: callbacks may start new transfers
            t.on_done(t.arg)

    def _advance(self, now: int) -> None:
        """Account the bytes moved since the last change at the current (constant) rates."""
        dt = now - self._last_ns
        if dt > 0:
            for t in self._flowing.values():
                t.remaining = max(0.0, t.remaining - t.rate * dt)
        self._last_ns = now

    def _reallocate(self, now: int) -> None:
        """Max-min fair rates by progressive filling, new finish times, one pending event."""
        unfixed: dict[int, _Transfer] = dict(self._flowing)
        cap = {id(link): link.bw for link in self._links.values()}
        count = {id(link): 0 for link in self._links.values()}
        for t in unfixed.values():
            for link in t.links:
                count[id(link)] += 1
        while unfixed:
            best: _Link | None = None
            best_share = math.inf
            for link in self._links.values():  # insertion order breaks ties
                n = count[id(link)]
                if n:
                    share = cap[id(link)] / n
                    if share < best_share:
                        best, best_share = link, share
            assert best is not None
            for t in [t for t in unfixed.values() if best in t.links]:
                t.rate = best_share
                del unfixed[t.tid]
                for link in t.links:
                    cap[id(link)] = max(0.0, cap[id(link)] - best_share)
                    count[id(link)] -= 1
        self._version += 1
        if not self._flowing:
            return
        first = math.inf
        for t in self._flowing.values():
            t.finish_ns = now + max(0, math.ceil(t.remaining / t.rate - _CEIL_SLACK_NS))
            first = min(first, t.finish_ns)
        self.kernel.schedule(int(first), PRIO_STATE, self._on_tick, self._version)
