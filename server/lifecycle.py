"""Graceful drain: count calls in flight, refuse new ones once draining, wait for the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from .errors import ApiError

# commands that make a new session: refused first when a replica drains
NEW_SESSION_COMMANDS = frozenset({"create_session", "fork"})


class Lifecycle:
    """`draining` refuses every call; `handing_off` (a handoff drain's grace period) refuses
    only calls that make new sessions, so open sessions keep being served."""

    def __init__(self) -> None:
        self.draining = False
        self.handing_off = False
        self._inflight = 0
        self._cond = threading.Condition()

    @contextmanager
    def call(self, key: str = "") -> Iterator[None]:
        """Wrap one command: UNAVAILABLE while draining, otherwise counted until it returns."""
        with self._cond:
            if self.draining:
                raise ApiError(grpc.StatusCode.UNAVAILABLE,
                               "server: draining, not accepting new calls; re-home the session elsewhere")
            if self.handing_off and key in NEW_SESSION_COMMANDS:
                raise ApiError(grpc.StatusCode.UNAVAILABLE,
                               "server: draining, not accepting new sessions; create it on another replica")
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                if not self._inflight:
                    self._cond.notify_all()

    @property
    def inflight(self) -> int:
        return self._inflight

    def start_drain(self) -> None:
        with self._cond:
            self.draining = True

    def wait_idle(self, timeout: float) -> bool:
        """Block until no command is in flight (True) or `timeout` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True
