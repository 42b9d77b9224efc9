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

Transfers on the same path always get the same rate, so they are kept in *path groups*:
a group tracks how many bytes each of its members has sent since the group began
(``sent``), and each member finishes when ``sent`` reaches its own target. Filling and
bookkeeping then cost O(links x paths) per change, however many transfers pile up.

Time is integer nanoseconds. Remaining bytes are floats; each finish time is rounded *up*
to the next nanosecond so a transfer never completes before its bytes are through. The
whole network keeps a single pending "next completion" kernel event; a version counter
makes superseded events no-ops. Ties (equal shares, equal finish times) resolve by link
insertion order and transfer start order, so runs are deterministic.

Units: ``bandwidth_gbs`` is decimal GB/s, i.e. exactly bytes per nanosecond.
"""

from __future__ import annotations

import heapq
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
    rank: int = 0  # creation order among the network's links


@dataclass
class _Transfer:
    tid: int
    links: list[_Link]
    nbytes: int
    on_done: Callable[[Any], None]
    arg: Any
    target: float = 0.0  # the group's `sent` at which this transfer is through


class _Group:
    """Flowing transfers that share one path (and therefore one max-min fair rate)."""

    __slots__ = ("links", "members", "sent", "rate", "base_sum", "finish_ns")

    def __init__(self, links: tuple[_Link, ...]) -> None:
        self.links = links
        self.members: list[tuple[float, int, _Transfer]] = []  # heap by (target, start order)
        self.sent = 0.0  # bytes each member has sent since the group began
        self.rate = 0.0  # bytes per ns, per member
        self.base_sum = 0.0  # sum over members of (target - nbytes): their `sent` at join
        self.finish_ns = 0

    def moved_partial(self) -> float:
        """Bytes the current members have sent so far, all together."""
        return len(self.members) * self.sent - self.base_sum


class Network:
    """A set of links plus the transfers in flight over them."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._links: dict[str, _Link] = {}
        self._transfers: dict[int, _Transfer] = {}  # every transfer not yet completed
        self._groups: dict[tuple[str, ...], _Group] = {}  # path -> its flowing transfers
        self._next_id = 0
        self._version = 0
        self._last_ns = 0  # time up to which the groups' `sent` is accounted

    # --- topology -----------------------------------------------------------------------
    def add_link(self, link_id: str, bandwidth_gbs: float, latency_us: float) -> None:
        """Add a link of ``bandwidth_gbs`` decimal GB/s and ``latency_us`` one-way latency."""
        if link_id in self._links:
            raise ValueError(f"duplicate link id {link_id!r}")
        if not bandwidth_gbs > 0 or not math.isfinite(bandwidth_gbs):
            raise ValueError(f"link {link_id!r}: bandwidth must be positive, got {bandwidth_gbs!r}")
        if not latency_us >= 0 or not math.isfinite(latency_us):
            raise ValueError(f"link {link_id!r}: latency must be >= 0, got {latency_us!r}")
        self._links[link_id] = _Link(link_id, float(bandwidth_gbs), round(latency_us * 1000.0), rank=len(self._links))

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
        t = _Transfer(self._next_id, path, int(nbytes), on_done, arg)
        self._transfers[t.tid] = t
        latency = sum(link.latency_ns for link in path)
        self.kernel.schedule(self.kernel.now + latency, PRIO_STATE, self._begin_data, t)
        return t.tid

    def cancel(self, tid: int) -> bool:
        """Stop transfer ``tid`` now: its callback never fires, the bytes it moved stay counted on
        its links, and its share of bandwidth goes to the others. False if it is not in flight."""
        t = self._transfers.pop(tid, None)
        if t is None:
            return False
        if t.target == 0.0:  # still in its latency phase: ``_begin_data`` will find it gone
            return True
        now = self.kernel.now
        self._advance(now)
        key = tuple(link.link_id for link in t.links)
        g = self._groups[key]
        g.members = [m for m in g.members if m[2] is not t]
        heapq.heapify(g.members)
        joined = t.target - t.nbytes
        g.base_sum -= joined
        moved = round(min(max(g.sent - joined, 0.0), t.nbytes))
        for link in t.links:
            link.done_bytes += moved
            link.active -= 1
            if link.active == 0:
                link.busy_ns += now - link.busy_since
        if not g.members:
            del self._groups[key]
        self._reallocate(now)
        return True

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
        for g in self._groups.values():
            sent = g.sent + g.rate * dt
            # each member has sent (group progress since it joined), at most its own size
            moved = sum(min(t.nbytes, sent - (target - t.nbytes)) for target, _, t in g.members)
            for link in g.links:
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
        if t.tid not in self._transfers:
            return  # cancelled
        if t.nbytes == 0 or not t.links:
            del self._transfers[t.tid]
            t.on_done(t.arg)
            return
        now = self.kernel.now
        self._advance(now)
        key = tuple(link.link_id for link in t.links)
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Group(tuple(t.links))
        t.target = g.sent + t.nbytes
        g.base_sum += g.sent
        heapq.heappush(g.members, (t.target, t.tid, t))
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
        done: list[_Transfer] = []
        for key, g in list(self._groups.items()):
            while g.members and self._finish_time(g, g.members[0][0], now) <= now:
                _, _, t = heapq.heappop(g.members)
                g.base_sum -= t.target - t.nbytes
                done.append(t)
                for link in t.links:
                    link.done_bytes += t.nbytes
                    link.active -= 1
                    if link.active == 0:
                        link.busy_ns += now - link.busy_since
            if not g.members:
                del self._groups[key]
        done.sort(key=lambda t: t.tid)  # start order
        for t in done:
            del self._transfers[t.tid]
        self._reallocate(now)
        for t in done:  # after the state is consistent: callbacks may start new transfers
            t.on_done(t.arg)

    @staticmethod
    def _finish_time(g: _Group, target: float, now: int) -> int:
        return now + max(0, math.ceil((target - g.sent) / g.rate - _CEIL_SLACK_NS))

    def _advance(self, now: int) -> None:
        """Account the bytes moved since the last change at the current (constant) rates."""
        dt = now - self._last_ns
        if dt > 0:
            for g in self._groups.values():
                g.sent += g.rate * dt
        self._last_ns = now

    def _reallocate(self, now: int) -> None:
        """Max-min fair rates by progressive filling over path groups, one pending event."""
        if len(self._groups) == 1:  # one group: its narrowest link's share (what the filling below finds)
            g = next(iter(self._groups.values()))
            g.rate = min(link.bw for link in g.links) / len(g.members)
            self._version += 1
            self.kernel.schedule(self._finish_time(g, g.members[0][0], now), PRIO_STATE, self._on_tick, self._version)
            return
        unfixed = dict(self._groups)
        cap: dict[int, float] = {}  # only the links some group crosses take part
        count: dict[int, int] = {}
        for g in unfixed.values():
            n = len(g.members)
            for link in g.links:
                key = id(link)
                if key in count:
                    count[key] += n
                else:
                    cap[key], count[key] = link.bw, n
        # the links in creation order (it breaks ties), as a scan of every link would meet them
        order = [link for _, link in sorted({link.rank: link for g in unfixed.values() for link in g.links}.items())]
        while unfixed:
            best: _Link | None = None
            best_share = math.inf
            for link in order:  # link creation order breaks ties
                n = count[id(link)]
                if n:
                    share = cap[id(link)] / n
                    if share < best_share:
                        best, best_share = link, share
            assert best is not None
            for key in [k for k, g in unfixed.items() if best in g.links]:
                g = unfixed.pop(key)
                g.rate = best_share
                n = len(g.members)
                for link in g.links:
                    cap[id(link)] = max(0.0, cap[id(link)] - best_share * n)
                    count[id(link)] -= n
        self._version += 1
        if not self._groups:
            return
        first = min(self._finish_time(g, g.members[0][0], now) for g in self._groups.values())
        self.kernel.schedule(int(first), PRIO_STATE, self._on_tick, self._version)


class Topology:
    """Where clients sit (node, rack) and which links a transfer between two places crosses.

    Links are created on first use, in the order paths ask for them (that order breaks ties
    in the fair-share filling, so it is part of a run's determinism). ``levels`` maps
    ``intra_node``, ``node_link`` and ``rack_link`` to (bandwidth GB/s, latency us).
    """

    def __init__(self, network: Network, levels: dict[str, tuple[float, float]]) -> None:
        self.network, self.levels = network, levels

    def link(self, link_id: str, bandwidth_gbs: float, latency_us: float) -> str:
        if not self.network.has_link(link_id):
            self.network.add_link(link_id, bandwidth_gbs, latency_us)
        return link_id

    def path(self, node_a: str, rack_a: str, node_b: str, rack_b: str) -> list[str]:
        """Links between two places: the node's fabric, or both NICs, or NICs and both rack uplinks."""
        lv = self.levels
        if node_a == node_b:
            return [self.link(f"intra:{node_a}", *lv["intra_node"])]
        path = [self.link(f"nic:{node_a}", *lv["node_link"])]
        if rack_a != rack_b:
            path += [self.link(f"rack:{rack_a}", *lv["rack_link"]), self.link(f"rack:{rack_b}", *lv["rack_link"])]
        return path + [self.link(f"nic:{node_b}", *lv["node_link"])]

    def nic(self, node: str) -> str:
        """The node's network interface link (a remote memory tier is reached through it)."""
        return self.link(f"nic:{node}", *self.levels["node_link"])
