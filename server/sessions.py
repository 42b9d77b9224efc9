"""The session registry: many isolated simulations, each behind its own lock.

Calls on one session are serialised by `Session.lock`; calls on different
sessions run in parallel (the registry lock is held only for lookups and
registration). A call that fails with an engine error leaves the session as it
was (the engine's calls are atomic). An unexpected exception inside a mutating
call may have left the simulation half-changed, so the session is marked
broken: it can still be read and closed, but not stepped.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from . import jsonlog
from .errors import ApiError, already_exists, exhausted, from_engine, not_found, precondition
from .hooks import Hooks


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
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False
    broken: str | None = None
    requests_injected: int = 0
    # snapshot id -> (blob, clock, requests_injected at the time)
    snapshots: dict[str, tuple[bytes, int, int]] = field(default_factory=dict, repr=False)
    snapshot_counter: int = 0
    # refreshed after every call, read without the lock by ListSessions
    now_ns: int = 0
    pending_decisions: int = 0

    def refresh(self) -> None:
        self.now_ns = int(self.sim.now_ns)
        self.pending_decisions = len(self.sim.pending_decisions())


class SessionManager:
    def __init__(self, max_sessions: int, hooks: Hooks | None = None, shard_id: str = "") -> None:
        self.max_sessions = max_sessions
        self.shard_id = shard_id
        self.hooks = hooks or Hooks()
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

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

    def add(self, session: Session, requested_id: str | None, field_name: str = "session_id") -> Session:
        """Register a new session under `requested_id` (or a fresh id); atomic with the limit check."""
        with self._lock:
            self.check_capacity()
            if requested_id is None:
                requested_id = self._fresh_id()
            self.check_free(requested_id, field_name)
            session.session_id = requested_id
            session.refresh()
            self._sessions[requested_id] = session
        jsonlog.log(logging.INFO, "session created", session_id=requested_id, spec=session.spec_name,
                    seed=session.seed, router=session.router_policy, parent=session.parent_session_id)
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
        session = self._sessions.get(session_id)
        if session is None:
            owner = session_id.split(".", 1)[0] if "." in session_id else ""
            if self.shard_id and owner and owner != self.shard_id:
                raise precondition("session_id", f"session {session_id!r} is owned by shard {owner!r}, "
                                   f"not by this shard {self.shard_id!r}: send its calls there")
            raise not_found("session_id", f"no session {session_id!r}")
        return session

    def list(self) -> list[Session]:
        with self._lock:
            return sorted(self._sessions.values(), key=lambda s: s.session_id)

    def close(self, session_id: str) -> Session:
        with self.use(session_id, mutates=False) as session:
            session.closed = True
            session.snapshots.clear()
            with self._lock:
                self._sessions.pop(session_id, None)
            self.hooks.session_closed(session_id)
        jsonlog.log(logging.INFO, "session closed", session_id=session_id, now_ns=session.now_ns)
        return session

    def close_all(self) -> None:
        for session in self.list():
            try:
                self.close(session.session_id)
            except ApiError:
                pass

    # ------------------------------------------------------------ serialised use

    @contextmanager
    def use(self, session_id: str, mutates: bool = True) -> Iterator[Session]:
        """Hold the session's lock for one call; map engine errors; quarantine on surprises."""
        session = self.get(session_id)
        with session.lock:
            if session.closed:
                raise not_found("session_id", f"no session {session_id!r} (closed)")
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
                raise ApiError(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}") from exc
            finally:
                if not session.closed:
                    try:
                        session.refresh()
                    except Exception:  # a broken simulation may not answer; keep the old values
                        pass
