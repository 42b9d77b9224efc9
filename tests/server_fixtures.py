"""Fixtures that run a REAL `hermes serve` process on a free loopback port.

Imported by tests/conftest.py. `start_server()` is also used directly by tests that
need their own server (auth, drain). Every server started here has the test-only
Advance gate on (`--test-gate-dir`, see server/api/testgate.py): `server.gate` holds
an Advance in flight until the test releases it, instead of a sleep that races it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r"listening on (\S+)")


def env_with_root() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class AdvanceGate:
    """Holds an Advance on a session at the end of its first slice until released.

    with server.gate.holding(session_id):   # Advances on this session now wait...
        start the Advance in a thread
        server.gate.wait_entered(session_id)  # ...it is in flight, and stays so
        act (SIGTERM, GetSession, CloseSession, scrape, cancel)
    # leaving the block releases it (so does the call's end: cancel, deadline, close, drain)
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def hold(self, session_id: str) -> None:
        (self.directory / f"{session_id}.entered").unlink(missing_ok=True)
        (self.directory / f"{session_id}.hold").touch()

    def release(self, session_id: str) -> None:
        (self.directory / f"{session_id}.hold").unlink(missing_ok=True)

    def wait_entered(self, session_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.directory / f"{session_id}.entered").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Advance on {session_id} reached the gate in {timeout} s")
            time.sleep(0.005)

    def holding(self, session_id: str) -> _Holding:
        return _Holding(self, session_id)


class _Holding:
    def __init__(self, gate: AdvanceGate, session_id: str) -> None:
        self.gate, self.session_id = gate, session_id

    def __enter__(self) -> AdvanceGate:
        self.gate.hold(self.session_id)
        return self.gate

    def __exit__(self, *exc: object) -> None:
        self.gate.release(self.session_id)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    address: str
    stderr_lines: list[str] = field(default_factory=list)
    gate: AdvanceGate | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        """The server's resident memory now (Linux /proc)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def logs(self) -> list[dict]:
        """The JSON log lines written so far."""
        import json

        out = []
        for line in list(self.stderr_lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def start_server(*args: str, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Start `python -m server.cli serve --port 0 ARGS` and wait for its listening line.

    `env` adds environment variables (e.g. HERMES_TOKEN) to the server's environment.
    """
    gate_dir = Path(tempfile.mkdtemp(prefix="hermes-gate-"))
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--test-gate-dir", str(gate_dir), *args]
    full_env = env_with_root()
    full_env.update(env or {})
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
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
            return ServerProcess(proc, m.group(1), stderr_lines, AdvanceGate(gate_dir))
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


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA certificate for localhost / 127.0.0.1 and its key, as PEM files in `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
