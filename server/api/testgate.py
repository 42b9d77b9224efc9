"""A test-only gate that holds a running Advance until a test releases it.

Tests that must act while an Advance is in flight (drain on SIGTERM, cancel,
close, metrics during a run) used to sleep and hope the call was still
running. With `hermes serve --test-gate-dir DIR` (a hidden flag; production
servers never set it), an Advance on session SID that finds the file
`DIR/SID.hold` creates `DIR/SID.entered` after its first slice and waits
until the hold file is removed or the call is interrupted (client gone,
deadline, session closed, server draining). A CreateSession that names its
session id SID waits the same way (until released only) just before it would
register the session. Without the flag nothing here runs.
tests/server_fixtures.py has the client side (`AdvanceGate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.005
MAX_HOLD_S = 120.0  # a forgotten hold file never wedges a test server for good


class TestGate:
    __test__ = False  # not a pytest test class

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def hold(self, session_id: str, interrupted: Callable[[], bool]) -> None:
        hold = self.directory / f"{session_id}.hold"
        if not hold.exists():
            return
        (self.directory / f"{session_id}.entered").touch()
        deadline = time.monotonic() + MAX_HOLD_S
        while hold.exists() and not interrupted() and time.monotonic() < deadline:
            time.sleep(POLL_S)
