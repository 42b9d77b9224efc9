"""Fixtures that run a REAL `hermes serve` process on a free loopback port.

Imported by tests/conftest.py. `start_server()` is also used directly by tests that
need their own server (auth, drain).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening on (\S+)")


def env_with_root() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str
    stderr_lines: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_server(*args: str, timeout: float = 30.0) -> ServerProcess:
    """Start `python -m server.cli serve --port 0 ARGS` and wait for its listening line."""
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_with_root(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    stderr_lines: list[str] = []

    def pump_stderr() -> None:  # keep the pipe drained; tests may read the JSON logs
        for line in proc.stderr:
            stderr_lines.append(line)

    threading.Thread(target=pump_stderr, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = LISTEN_RE.search(line)
        if m:
            threading.Thread(target=lambda: proc.stdout.read(), daemon=True).start()
            return ServerProcess(proc, m.group(1), stderr_lines)
    proc.kill()
    raise RuntimeError("hermes serve did not start:\n" + "".join(stderr_lines))


@pytest.fixture(scope="session")
def hermes_server() -> Iterator[ServerProcess]:
    """One shared server for the whole test session (tests use their own sessions on it)."""
    server = start_server("--max-sessions", "200")
    yield server
    assert server.stop() == 0


@pytest.fixture()
def client(hermes_server: ServerProcess):
    from client_sdk import Client

    with Client(hermes_server.address, timeout=60) as c:
        yield c
