"""The session registry: many isolated simulations, each behind its own step lock.

Calls that step or change one session are serialised by `Session.lock`; calls
on different sessions run in parallel (the registry lock is held only for
lookups and registration). GetSession, ListSessions and CloseSession do not
wait for the step lock: they answer from what the last call left behind, and a
close marks the session closed so that a running Advance stops at its next
slice (the close hooks then run once the lock is free).

A call that fails with an engine error leaves the session as it was (the
engine's calls are atomic). An unexpected exception inside a mutating call may
have left the simulation half-changed, so the session is marked broken: it can
still be read and closed, but not stepped.

Sessions nobody uses are reaped: after `idle_timeout_s` without a call (a JSON
log line and the `on_session_reaped` hook say so), and when the Session stream
that created them ends (see server/api/service.py).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from . import jsonlog
from .errors import ApiError, already_exists, exhausted, from_engine, not_found, precondition
from .hooks import Hooks


class Deadline(Protocol):
    """What the registry asks of a call before it applies anything (server/api/base.CallContext)."""

    def check_live(self) -> None: ...


@dataclass
class Session:
    """One simulated world and what the server keeps beside it."""

    session_id: str
    sim: Any  # sim_engine.Simulation
    spec_name: str
    seed: int
    router_policy: str
    event_kinds: frozenset[str] | None = None  # None: deliver every kind
    parent_session_id: str = ""
    bound_to_stream: bool = False  # closed when the Session stream that created it ends
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False
    broken: str | None = None
    requests_injected: int = 0
    # snapshot id -> (blob, clock, requests_injected at the time)
    snapshots: dict[str, tuple[bytes, int, int]] = field(default_factory=dict, repr=False)
    snapshot_counter: int = 0
    # refreshed after every call, read without the lock by GetSession / ListSessions
    now_ns: int = 0
    pending_decisions: int = 0
    client_ids: list[str] = field(default_factory=list)
    client_ids_stale: bool = True
    # idle accounting (monotonic seconds; calls in progress, waiting for the lock included)
    last_used: float = field(default_factory=time.monotonic)
    active_calls: int = 0

    def refresh(self, client_ids: bool = False) -> None:
        self.now_ns = int(self.sim.now_ns)
        self.pending_decisions = len(self.sim.pending_decisions()) + len(self.sim.pending_batch_decisions())
        if client_ids:
            self.client_ids = [str(c.id) for c in self.sim.state().clients]
            self.client_ids_stale = False

    def touch(self) -> None:
        self.last_used = time.monotonic()


class SessionManager:
    def __init__(self, max_sessions: int, hooks: Hooks | None = None, idle_timeout_s: float = 0.0,
                 shard_id: str = "") -> None:
        self.max_sessions = max_sessions
        self.shard_id = shard_id
        self.hooks = hooks or Hooks()
        self.idle_timeout_s = idle_timeout_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop_reaper = threading.Event()
        self._reaper: threading.Thread | None = None
        self._closers: list[threading.Thread] = []

    # ------------------------------------------------------------ registry

    def __len__(self) -> int:
        return len(self._sessions)

    def check_capacity(self) -> None:
        """Fail early (before building a simulation) when no session slot is free."""
        if self.max_sessions and len(self._sessions) >= self.max_sessions:
            raise exhausted("sessions", f"the server holds its limit of {self.max_sessions} sessions")

    def check_free(self, session_id: str | None, field_name: str) -> None:
        if session_id is not None and session_id in self._sessions:
            raise already_exists(field_name, f"session {session_id!r} exists")

    def add(self, session: Session, requested_id: str | None, field_name: str = "session_id",
            call: Deadline | None = None) -> Session:
        """Register a new session under `requested_id` (or a fresh id); atomic with the limit check.

        A call whose client has gone (deadline passed, cancelled) registers nothing.
        """
        with self._lock:
            if call is not None:
                call.check_live()
            self.check_capacity()
            if requested_id is None:
                requested_id = self._fresh_id()
            self.check_free(requested_id, field_name)
            session.session_id = requested_id
            session.refresh(client_ids=True)
            session.touch()
            self._sessions[requested_id] = session
        jsonlog.log(logging.INFO, "session created", session_id=requested_id, spec=session.spec_name,
                    seed=session.seed, router=session.router_policy, parent=session.parent_session_id,
                    bound_to_stream=session.bound_to_stream)
        with session.lock:
            self.hooks.session_created(requested_id, session.sim)
        return session

    def _fresh_id(self) -> str:
        while True:
            local = f"s-{secrets.token_hex(4)}"
            sid = f"{self.shard_id}.{local}" if self.shard_id else local
            if sid not in self._sessions:
                return sid

    def get(self, session_id: str) -> Session:
        """The open session `session_id` (no lock taken: read only what `refresh` keeps)."""
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            owner = session_id.split(".", 1)[0] if "." in session_id else ""
            if self.shard_id and owner and owner != self.shard_id:
                raise precondition("session_id", f"session {session_id!r} is owned by shard {owner!r}, "
                                   f"not by this shard {self.shard_id!r}: send its calls there")
            raise not_found("session_id", f"no session {session_id!r}")
        session.touch()
        return session

    def list(self) -> list[Session]:
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.session_id)

    def close(self, session_id: str, reason: str | None = None) -> Session:
        """Close now, without waiting for a running call: it stops at its next check.

        `reason` is set when the server closes the session on its own ("idle", "stream_ended").
        The hooks run under the session's lock, at once when it is free, else in a helper
        thread that waits for it.
        """
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None or session.closed:
                raise not_found("session_id", f"no session {session_id!r}")
            session.closed = True
        fields: dict[str, Any] = {"session_id": session_id, "now_ns": session.now_ns}
        if reason is not None:
            fields.update(reason=reason, idle_s=round(time.monotonic() - session.last_used, 3))
        jsonlog.log(logging.INFO, "session reaped" if reason else "session closed", **fields)
        if session.lock.acquire(blocking=False):
            try:
                self._finish_close(session, reason)
            finally:
                session.lock.release()
        else:
            t = threading.Thread(target=self._finish_when_free, args=(session, reason), daemon=True,
                                 name=f"close-{session_id}")
            with self._lock:
                self._closers = [c for c in self._closers if c.is_alive()] + [t]
            t.start()
        return session

    def _finish_when_free(self, session: Session, reason: str | None) -> None:
        with session.lock:
            self._finish_close(session, reason)

    def _finish_close(self, session: Session, reason: str | None) -> None:
        """Under the session's lock: drop what the session holds and tell the observers."""
        session.snapshots.clear()
        if reason is not None:
            self.hooks.session_reaped(session.session_id, reason)
        self.hooks.session_closed(session.session_id)
        session.sim = None  # free the simulation now, whoever still holds the Session object

    def close_quietly(self, session_id: str, reason: str | None = None) -> bool:
        """Close if still open; False when it was already gone."""
        try:
            self.close(session_id, reason)
        except ApiError:
            return False
        return True

    def close_all(self) -> None:
        for session in self.list():
            self.close_quietly(session.session_id)
        self.wait_closers(5.0)

    def wait_closers(self, timeout: float) -> None:
        """Wait (bounded) until closes that waited for a running call have finished."""
        deadline = time.monotonic() + timeout
        with self._lock:
            closers = list(self._closers)
        for t in closers:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ idle reaping

    def idle_sessions(self, now: float | None = None) -> list[Session]:
        """Open sessions with no call in progress and none for longer than the idle timeout."""
        if not self.idle_timeout_s:
            return []
        now = time.monotonic() if now is None else now
        return [s for s in self.list()
                if not s.active_calls and now - s.last_used > self.idle_timeout_s]

    def reap_idle(self) -> list[str]:
        reaped = []
        for s in self.idle_sessions():
            if not s.active_calls and self.close_quietly(s.session_id, reason="idle"):
                reaped.append(s.session_id)
        return reaped

    def start_reaper(self) -> None:
        if not self.idle_timeout_s or self._reaper is not None:
            return
        interval = min(5.0, max(0.05, self.idle_timeout_s / 10))

        def loop() -> None:
            while not self._stop_reaper.wait(interval):
                try:
                    self.reap_idle()
                except Exception:  # the reaper must outlive any surprise
                    logging.getLogger(jsonlog.LOGGER_NAME).exception("idle reaper failed")

        self._reaper = threading.Thread(target=loop, daemon=True, name="idle-reaper")
        self._reaper.start()

    def stop_reaper(self) -> None:
        self._stop_reaper.set()
        if self._reaper is not None:
            self._reaper.join(timeout=10)
            self._reaper = None

    # ------------------------------------------------------------ serialised use

    @contextmanager
    def use(self, session_id: str, mutates: bool = True, call: Deadline | None = None) -> Iterator[Session]:
        """Hold the session's step lock for one call; map engine errors; quarantine on surprises.

        A call whose client has gone by the time it holds the lock applies nothing.
        """
        session = self.get(session_id)
        with self._lock:
            session.active_calls += 1
        try:
            with session.lock:
                if session.closed:
                    raise not_found("session_id", f"no session {session_id!r} (closed)")
                if call is not None:
                    call.check_live()
                if mutates and session.broken:
                    raise precondition("session_id", f"session is broken by an earlier internal error "
                                       f"({session.broken}); close it")
                try:
                    yield session
                except ApiError:
                    raise
                except Exception as exc:
                    mapped = from_engine(exc)
                    if mapped is not None:
                        raise mapped from exc
                    if mutates:
                        session.broken = f"{type(exc).__name__}: {exc}"
                    logging.getLogger(jsonlog.LOGGER_NAME).exception(
                        "internal error", extra={"fields": {"session_id": session_id}})
                    raise ApiError(grpc.StatusCode.INTERNAL,
                                   f"internal error: {type(exc).__name__}: {exc}") from exc
                finally:
                    if mutates:
                        session.client_ids_stale = True
                    if not session.closed and session.sim is not None:
                        try:
                            session.refresh()
                        except Exception:  # a broken simulation may not answer; keep the old values
                            pass
        finally:
            with self._lock:
                session.active_calls -= 1
            session.touch()
