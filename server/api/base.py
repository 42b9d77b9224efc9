"""What every command handler shares: the registry, the settings, and how a session is described."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hermes.v1 import session_pb2

from ..config import ServerConfig
from ..hooks import Hooks
from ..lifecycle import Lifecycle
from ..sessions import Session, SessionManager
from . import wire


def _never() -> bool:
    return False


@dataclass
class CallContext:
    """Per-call facts a handler may consult (both for unary calls and stream commands)."""

    # True when a long call should return early (deadline near, server draining)
    interrupted: Callable[[], bool] = field(default=_never)


class ApiBase:
    def __init__(self, manager: SessionManager, config: ServerConfig, hooks: Hooks,
                 lifecycle: Lifecycle | None = None) -> None:
        self.manager = manager
        self.config = config
        self.hooks = hooks
        self.lifecycle = lifecycle or Lifecycle()

    @staticmethod
    def session_info(s: Session, client_ids: list[str] | None = None) -> session_pb2.SessionInfo:
        info = session_pb2.SessionInfo(
            session_id=s.session_id, spec_name=s.spec_name, seed=s.seed, router_policy=s.router_policy,
            now_ns=s.now_ns, requests_injected=s.requests_injected,
            pending_decisions=s.pending_decisions, snapshots=len(s.snapshots),
            parent_session_id=s.parent_session_id,
        )
        if client_ids:
            info.client_ids.extend(client_ids)
        if s.event_kinds is not None:
            info.event_kinds.extend(sorted(wire.EVENT_KINDS[k] for k in s.event_kinds))
        return info

    @staticmethod
    def client_ids(sim: Any) -> list[str]:
        return [str(c.id) for c in sim.state().clients]
