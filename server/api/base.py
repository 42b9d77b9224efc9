"""What every command handler shares: the registry, the settings, and how a session is described."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hermes.v1 import session_pb2

from ..config import ServerConfig
from ..errors import ApiError
from ..hooks import Hooks
from ..lifecycle import Lifecycle
from ..sessions import Session, SessionManager
from . import wire
from .testgate import TestGate


def _never() -> bool:
    return False


def _present() -> ApiError | None:
    return None


@dataclass
class CallContext:
    """Per-call facts a handler may consult (both for unary calls and stream commands)."""

    # True when a long call should return early (client gone, deadline near, budget spent, draining)
    interrupted: Callable[[], bool] = field(default=_never)
    # the error to answer when the caller is already gone (deadline passed, cancelled), else None
    gone: Callable[[], ApiError | None] = field(default=_present)
    # set on a Session stream: sessions created there (without `keep`) close when it ends
    claim: Callable[[str], None] | None = None

    def check_live(self) -> None:
        """Raise when the caller is gone: a call nobody waits for must not change anything."""
        err = self.gone()
        if err is not None:
            raise err


class ApiBase:
    def __init__(self, manager: SessionManager, config: ServerConfig, hooks: Hooks,
                 lifecycle: Lifecycle | None = None) -> None:
        self.manager = manager
        self.config = config
        self.hooks = hooks
        self.gate = TestGate(config.test_gate_dir) if config.test_gate_dir else None
        self.lifecycle = lifecycle or Lifecycle()

    @staticmethod
    def session_info(s: Session, client_ids: list[str] | None = None) -> session_pb2.SessionInfo:
        info = session_pb2.SessionInfo(
            session_id=s.session_id, spec_name=s.spec_name, seed=s.seed, router_policy=s.router_policy,
            now_ns=s.now_ns, requests_injected=s.requests_injected,
            pending_decisions=s.pending_decisions, snapshots=len(s.snapshots),
            parent_session_id=s.parent_session_id, bound_to_stream=s.bound_to_stream,
        )
        if client_ids:
            info.client_ids.extend(client_ids)
        if s.event_kinds is not None:
            info.event_kinds.extend(sorted(wire.EVENT_KINDS[k] for k in s.event_kinds))
        return info

    @staticmethod
    def client_ids(s: Session) -> list[str]:
        """The session's client ids: fresh when no call holds the session, else as the last call left them."""
        if s.client_ids_stale and s.lock.acquire(blocking=False):
            try:
                if not s.closed and s.sim is not None:
                    s.refresh(client_ids=True)
            finally:
                s.lock.release()
        return list(s.client_ids)

    @staticmethod
    def live_client_ids(sim: Any) -> list[str]:
        """The client ids straight from the simulation (the caller holds the session's lock)."""
        return [str(c.id) for c in sim.state().clients]
