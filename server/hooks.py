"""The observer hook: how the metrics exporter (or anything else) learns what sessions do.

The server calls these methods synchronously; the session hooks run while the
session's lock is held, so an observer sees a consistent simulation and must
return quickly (read what it needs, do not call back into the server). Every
method is optional: an observer implements only those it needs. Exceptions an
observer raises are logged and swallowed; they never fail a call.
See docs/SERVER_HOOKS.md.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from . import jsonlog

HOOKS = ("on_session_created", "on_session_advanced", "on_session_closed", "on_session_reaped", "on_rpc")
# why the server (not the client) closed a session: on_session_reaped's `reason`
REAP_REASONS = ("idle", "stream_ended")


class Observer(Protocol):
    def on_session_created(self, session_id: str, sim: Any) -> None: ...
    def on_session_advanced(self, session_id: str, sim: Any, events: Sequence[Any] = (),
                            wall_seconds: float | None = None) -> None: ...
    def on_session_closed(self, session_id: str) -> None: ...
    def on_session_reaped(self, session_id: str, reason: str) -> None: ...
    def on_rpc(self, method: str, code: str, seconds: float) -> None: ...


class Hooks:
    """Fans each hook out to the observers that implement it, isolating their failures."""

    def __init__(self, observers: list[Any] | None = None) -> None:
        self._calls: dict[str, list[Any]] = {name: [] for name in HOOKS}
        self._wants_events: set[Any] = set()  # on_session_advanced hooks taking events=, wall_seconds=
        for obs in observers or []:
            self.add(obs)

    def add(self, observer: Any) -> None:
        for name in HOOKS:
            fn = getattr(observer, name, None)
            if callable(fn):
                self._calls[name].append(fn)
                if name == "on_session_advanced" and _accepts(fn, "events", "wall_seconds"):
                    self._wants_events.add(fn)

    def _fire(self, name: str, *args: Any, **extra: Any) -> None:
        for fn in self._calls[name]:
            try:
                if extra and fn in self._wants_events:
                    fn(*args, **extra)
                else:
                    fn(*args)
            except Exception:  # an observer must never break a call
                jsonlog.log(logging.ERROR, "observer failed", hook=name, observer=repr(fn))
                logging.getLogger(jsonlog.LOGGER_NAME).debug("observer traceback", exc_info=True)

    def session_created(self, session_id: str, sim: Any) -> None:
        if self._calls["on_session_created"]:
            self._fire("on_session_created", session_id, sim)

    def session_advanced(self, session_id: str, sim: Any, events: Sequence[Any] = (),
                         wall_seconds: float | None = None) -> None:
        if self._calls["on_session_advanced"]:
            self._fire("on_session_advanced", session_id, sim, events=events, wall_seconds=wall_seconds)

    def session_closed(self, session_id: str) -> None:
        if self._calls["on_session_closed"]:
            self._fire("on_session_closed", session_id)

    def session_reaped(self, session_id: str, reason: str) -> None:
        """The server closed a session on its own (`reason` in REAP_REASONS); on_session_closed follows."""
        if self._calls["on_session_reaped"]:
            self._fire("on_session_reaped", session_id, reason)

    def rpc(self, method: str, code: str, seconds: float) -> None:
        if self._calls["on_rpc"]:
            self._fire("on_rpc", method, code, seconds)


def _accepts(fn: Any, *names: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names) or any(p.kind is p.VAR_KEYWORD for p in params.values())
