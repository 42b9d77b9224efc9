"""Sessions that survive the loss of their replica, by deterministic replay.

A simulation is a pure function of its spec, seed and the commands applied to it, so
nothing needs to move when a replica dies: the SDK keeps a *replay log* per session
(the create request, then every state-changing command as it took effect) and, when
the owner is unreachable or draining, creates the session again on another replica,
re-applies the log there and continues with the call that failed.

What is logged, and how it is re-applied:
- inject, decide, abort, add_wakeup, change_cluster: the request as sent; inject's returned
  request ids must come back the same.
- advance: as the time reached and the exact number of events processed (not the
  request): a reply cut short by the server (event cap, deadline, drain) replays the same.
- snapshot / restore / drop_snapshot: positions in the log; snapshot ids are mapped to
  the ids the new replica hands out (snapshot blobs never leave their process).
- fork: a child's log starts as a copy of its parent's, then a marker (the child starts
  with no snapshots of its own).
Every `digest_every` logged commands the SDK records the server's state digest; replay
compares them at the same positions and stops with `ReplayMismatch` on a difference.
Replay onto a replica of another server version is refused unless allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from hermes.v1 import control_pb2, session_pb2

from .errors import FailedPrecondition, HermesError, Unavailable

# commands whose effect the log must reproduce
LOGGED = frozenset({"inject", "advance", "decide", "abort", "add_wakeup", "change_cluster", "snapshot", "restore",
                    "drop_snapshot"})
# a call failing with these means the owner is gone or leaving: re-home the session
REHOME_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
FORK_MARKER = "fork"


class ReplayMismatch(HermesError):
    """Replaying a session's log on another replica did not reproduce the same state."""

    def __init__(self, message: str) -> None:
        super().__init__(message, grpc.StatusCode.DATA_LOSS)


@dataclass
class Entry:
    key: str
    request: Any  # the request with the session's logical ids
    time_ns: int = 0  # advance: the time reached
    events: int = 0  # advance: events processed
    result: tuple[str, ...] = ()  # inject: request ids; snapshot: the snapshot's logical id


@dataclass
class ReplayLog:
    """Everything needed to rebuild one session on any replica of the same server version."""

    create: session_pb2.CreateSessionRequest
    server_version: str
    entries: list[Entry] = field(default_factory=list)
    digests: dict[int, str] = field(default_factory=dict)  # number of entries applied -> digest

    def forked(self) -> ReplayLog:
        child = ReplayLog(self.create, self.server_version, list(self.entries), dict(self.digests))
        child.entries.append(Entry(FORK_MARKER, None))
        return child


class ReplayTransport:
    """The transport of one session on a sharded `Client`: sends each call to the session's
    current owner under its current id, logs what changes state, and re-homes on failure."""

    def __init__(self, client: Any, log: ReplayLog, target: str, session_id: str, stream: bool,
                 digest_every: int, allow_cross_version: bool, transport: Any = None) -> None:
        self.client = client
        self.log = log
        self.target = target
        self.physical_id = session_id
        self.stream = stream
        self.digest_every = digest_every
        self.allow_cross_version = allow_cross_version
        self.snapshot_ids: dict[str, str] = {}  # logical -> physical
        self.rehomed = 0
        # a stream stays the one the session was created on (it is routed once, when opened)
        self._inner = transport if stream and transport else client.transport_for(target, stream, session_id)

    # ------------------------------------------------------------ calls

    def call(self, key: str, request: Any, timeout: float | None = None) -> Any:
        try:
            reply = self._send(key, request, timeout)
        except HermesError as err:
            if err.code not in REHOME_CODES:
                raise
            if key == "close_session":  # the session went with its replica
                return session_pb2.CloseSessionReply()
            self.rehome(reason=str(err))
            reply = self._send(key, request, timeout)
        if key in LOGGED:
            self._record(key, request, reply)
        return reply

    def _send(self, key: str, request: Any, timeout: float | None = None) -> Any:
        return self._inner.call(key, self._physical(request), timeout)

    def _physical(self, request: Any) -> Any:
        fields = request.DESCRIPTOR.fields_by_name
        if "session_id" not in fields and "snapshot_id" not in fields:
            return request
        r = type(request)()
        r.CopyFrom(request)
        if "session_id" in fields:
            r.session_id = self.physical_id
        if "snapshot_id" in fields and r.snapshot_id in self.snapshot_ids:
            r.snapshot_id = self.snapshot_ids[r.snapshot_id]
        return r

    def _record(self, key: str, request: Any, reply: Any) -> None:
        kept = type(request)()
        kept.CopyFrom(request)
        entry = Entry(key, kept)
        if key == "advance":
            entry.time_ns, entry.events = int(reply.time_ns), int(reply.events_processed)
        elif key == "inject":
            entry.result = tuple(reply.request_ids)
        elif key == "snapshot":
            self.snapshot_ids[reply.snapshot_id] = reply.snapshot_id
            entry.result = (reply.snapshot_id,)
        elif key == "drop_snapshot":
            self.snapshot_ids.pop(request.snapshot_id, None)
        self.log.entries.append(entry)
        n = len(self.log.entries)
        if self.digest_every and n % self.digest_every == 0:
            self.log.digests[n] = self.digest()

    def digest(self) -> str:
        return self._send("get_digest", session_pb2.GetDigestRequest(session_id=self.physical_id)).digest

    def close(self) -> None:
        self._inner.close()

    # ------------------------------------------------------------ re-homing

    def rehome(self, reason: str = "") -> None:
        """Rebuild the session on another ready replica by replaying the log."""
        failed = self.target
        for target in self.client.placement_order(exclude={failed}):
            try:
                self._replay_on(target)
            except ReplayMismatch:
                raise
            except HermesError as err:
                if err.code in REHOME_CODES:
                    continue  # that replica is gone or leaving too: try the next one
                raise
            self.rehomed += 1
            return
        raise Unavailable(f"session could not be re-homed: no other replica is ready ({reason})")

    def _replay_on(self, target: str) -> None:
        info = self.client.info_of(target)
        if info.server_version != self.log.server_version and not self.allow_cross_version:
            raise FailedPrecondition(f"replica {target} runs server version {info.server_version}, the session "
                                     f"was created on {self.log.server_version}; pass "
                                     "allow_cross_version_replay=True to replay across versions")
        old = self._inner
        self._inner = self.client.transport_for(target, self.stream)
        try:
            created = self._inner.call("create_session", self.log.create).session
            if not self.stream:  # later unary calls carry the owner's shard in the routing header
                self._inner = self.client.transport_for(target, False, created.session_id)
            self.physical_id, self.target, self.snapshot_ids = created.session_id, target, {}
            now = int(created.now_ns)
            for n, entry in enumerate(self.log.entries, start=1):
                now = self._apply(entry, now)
                if n in self.log.digests and self.digest() != self.log.digests[n]:
                    raise ReplayMismatch(f"replaying on {target}: state digest differs after command {n} "
                                         f"({entry.key}); the server is not deterministic for this session")
        except BaseException:
            self._inner.close()
            self._inner = old
            raise
        old.close()

    def _apply(self, entry: Entry, now: int) -> int:
        """Re-apply one logged command; returns the clock after it."""
        if entry.key == FORK_MARKER:  # a fork starts with no snapshots
            for logical in list(self.snapshot_ids):
                self._send("drop_snapshot", session_pb2.DropSnapshotRequest(snapshot_id=logical))
            self.snapshot_ids = {}
            return now
        if entry.key == "advance":
            return self._replay_advance(entry, now)
        reply = self._send(entry.key, entry.request)
        if entry.key == "inject" and tuple(reply.request_ids) != entry.result:
            raise ReplayMismatch(f"replayed inject returned ids {list(reply.request_ids)[:3]}..., "
                                 f"expected {list(entry.result)[:3]}...")
        if entry.key == "snapshot":
            self.snapshot_ids[entry.result[0]] = reply.snapshot_id
        elif entry.key == "drop_snapshot":
            self.snapshot_ids.pop(entry.request.snapshot_id, None)
        elif entry.key == "restore":
            return int(reply.session.now_ns)
        return now

    def _replay_advance(self, entry: Entry, now: int) -> int:
        """Process exactly `entry.events` events and reach `entry.time_ns`."""
        done = 0
        while done < entry.events or now < entry.time_ns:
            left = entry.events - done
            # with no event left to process, a bound of 1 lets the clock move to the target
            # and would show (as one event too many) any event the original run did not see
            req = control_pb2.AdvanceRequest(session_id=self.physical_id, until_ns=entry.time_ns,
                                             max_events=max(left, 1))
            reply = self._send("advance", req)
            done += int(reply.events_processed)
            if done > entry.events or (reply.events_processed == 0 and int(reply.time_ns) == now
                                       and now < entry.time_ns):
                raise ReplayMismatch(f"replayed advance to {entry.time_ns} ns took {done} events, "
                                     f"the original {entry.events}")
            now = int(reply.time_ns)
        return now
