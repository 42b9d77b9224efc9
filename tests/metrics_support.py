"""Helpers (no tests) for the metrics, deploy and Node.js tests: a real `hermes serve`
subprocess or an in-process server with an Advance gate, a real Prometheus server,
/metrics scraping and a small gRPC driver."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
IN_CI = bool(os.environ.get("CI"))

# a small, fast two-client spec fed only by injection
SPEC_YAML = """
name: metrics-test
seed: 3
clients:
  - {id: h100-0, hardware: H100-SXM, model: Llama-3.1-8B}
  - {id: a100-0, hardware: A100-80GB, model: Llama-3.1-8B}
router: round_robin
workload:
  arrival: {process: none}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hermes_argv() -> list[str]:
    """How to run the `hermes` CLI here: the console script if installed, else the module."""
    exe = shutil.which("hermes")
    return [exe] if exe else [sys.executable, "-m", "server.cli"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tools_required() -> bool:
    """Whether a missing tool fails the test rather than skipping it.

    HERMES_REQUIRE_TOOLS=1/0 when set (scripts/test.sh sets 1 when it could install the
    tools, as root, and 0 when it could not); otherwise in CI only."""
    env = os.environ.get("HERMES_REQUIRE_TOOLS")
    return env == "1" if env is not None else IN_CI


def require_tool(name: str, why: str) -> str:
    """The tool's path; skip without it, unless the tools must be there (CI, root test.sh)."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} not found ({why}); run scripts/install_test_deps.sh as root"
    if tools_required():
        pytest.fail(msg + " -- CI must have it (HERMES_REQUIRE_TOOLS=1)")
    pytest.skip(msg)


# ---------------------------------------------------------------- hermes serve


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    metrics_port: int | None
    lines: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float, lines: list[str]) -> re.Match:
    """Read proc's stdout until a line matches `pattern` (collecting lines)."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        m = regex.search(line)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output: {''.join(lines)[-2000:]}")


def start_process(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


@contextmanager
def hermes_server(metrics: bool = True, extra: list[str] | None = None) -> Iterator[Server]:
    """`hermes serve --port 0 [--metrics-port N]` on loopback, stopped (SIGTERM) afterwards."""
    metrics_port = free_port() if metrics else None
    argv = hermes_argv() + ["serve", "--host", "127.0.0.1", "--port", "0"]
    if metrics:
        argv += ["--metrics-port", str(metrics_port)]
    proc = start_process(argv + (extra or []))
    lines: list[str] = []
    try:
        m = wait_for_line(proc, r"listening on \S*:(\d+)", 60, lines)
        yield Server(proc, int(m.group(1)), metrics_port, lines)
    finally:
        stop_process(proc)


# ---------------------------------------------------------------- in-process server with an Advance gate


class AdvanceGate:
    """An observer that holds a finished Advance on a held session until the test releases it.

    It runs where every observer runs: under the session's lock, before the reply is sent
    and before the metrics exporter (registered after it) folds the Advance in. So while
    held, the Advance RPC is in flight and the session is locked: a test acts "during a
    long Advance" without sleeping and hoping the call is still running.
    """

    def __init__(self, timeout: float = 60.0) -> None:
        self._cond = threading.Condition()
        self._held: set[str] = set()
        self._entered: set[str] = set()
        self.timeout = timeout

    def hold(self, session_id: str) -> None:
        with self._cond:
            self._held.add(session_id)
            self._entered.discard(session_id)

    def release(self, session_id: str) -> None:
        with self._cond:
            self._held.discard(session_id)
            self._cond.notify_all()

    def release_all(self) -> None:
        with self._cond:
            self._held.clear()
            self._cond.notify_all()

    def wait_entered(self, session_id: str, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: session_id in self._entered, timeout)

    def on_session_advanced(self, session_id: str, sim: Any, events: Any = (),
                            wall_seconds: float | None = None) -> None:
        with self._cond:
            if session_id not in self._held:
                return
            self._entered.add(session_id)
            self._cond.notify_all()
            self._cond.wait_for(lambda: session_id not in self._held, self.timeout)


@dataclass
class InProcessServer:
    server: Any  # server.api.app.HermesServer
    exporter: Any  # server.metrics.exporter.MetricsExporter
    gate: AdvanceGate

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def metrics_port(self) -> int:
        return self.exporter.port

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter.port}/metrics"


@contextmanager
def in_process_server(**exporter_options: Any) -> Iterator[InProcessServer]:
    """A gRPC server and its /metrics exporter in this process, with an AdvanceGate observer."""
    from server.api.app import HermesServer
    from server.config import ServerConfig
    from server.metrics.exporter import start_metrics_server

    gate = AdvanceGate()
    exporter = start_metrics_server(0, "127.0.0.1", **exporter_options)
    server = HermesServer(ServerConfig(host="127.0.0.1", port=0, log_level="warning"),
                          observers=[gate, exporter])
    server.start()
    try:
        yield InProcessServer(server, exporter, gate)
    finally:
        gate.release_all()
        server.drain(5.0)
        exporter.stop()


# ---------------------------------------------------------------- scraping


def scrape(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in an exposition."""
    return [(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def sample_names(text: str) -> set[str]:
    return {name for name, _, _ in samples(text)}


def value(text: str, name: str, **labels: str) -> float | None:
    for n, lab, v in samples(text):
        if n == name and all(lab.get(k) == x for k, x in labels.items()):
            return v
    return None


# ---------------------------------------------------------------- driving a session (raw stubs)


class Driver:
    """A thin gRPC driver on the generated stubs (independent of the Python SDK)."""

    def __init__(self, target: str) -> None:
        from hermes.v1 import simulator_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.stub = simulator_pb2_grpc.SimulatorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def create(self, yaml_text: str = SPEC_YAML, session_id: str = "") -> str:
        from hermes.v1 import session_pb2

        req = session_pb2.CreateSessionRequest(spec=session_pb2.SpecSource(yaml=yaml_text), session_id=session_id)
        return self.stub.CreateSession(req, timeout=30).session.session_id

    def inject(self, sid: str, n: int, prompt: int = 256, output: int = 64, gap_ns: int = 20_000_000,
               start_ns: int = 0) -> list[str]:
        from hermes.v1 import common_pb2, control_pb2

        reqs = [common_pb2.RequestInput(arrival_ns=start_ns + i * gap_ns, prompt_tokens=prompt + 7 * (i % 5),
                                        output_tokens=output + 3 * (i % 7)) for i in range(n)]
        reply = self.stub.Inject(control_pb2.InjectRequest(session_id=sid, requests=reqs), timeout=30)
        return list(reply.request_ids)

    def advance(self, sid: str, until_ns: int | None = None, timeout: float = 120.0) -> Any:
        from hermes.v1 import control_pb2

        req = control_pb2.AdvanceRequest(session_id=sid)
        if until_ns is not None:
            req.until_ns = until_ns
        return self.stub.Advance(req, timeout=timeout)

    def run_to_idle(self, sid: str) -> list[Any]:
        """Advance until IDLE; every COMPLETED event delivered on the way."""
        from hermes.v1 import common_pb2

        done = []
        for _ in range(100_000):
            r = self.advance(sid)
            done += [e for e in r.events if e.kind == common_pb2.EVENT_KIND_COMPLETED]
            if r.reason == common_pb2.STOP_REASON_IDLE:
                return done
            assert r.reason != common_pb2.STOP_REASON_DECISION_NEEDED, "unexpected decision"
        raise AssertionError("session never went idle")

    def state(self, sid: str) -> Any:
        from hermes.v1 import control_pb2

        return self.stub.GetState(control_pb2.GetStateRequest(session_id=sid), timeout=30).state

    def summary(self, sid: str) -> dict:
        from hermes.v1 import control_pb2

        return json.loads(self.stub.GetSummary(control_pb2.GetSummaryRequest(session_id=sid), timeout=30).summary_json)

    def close_session(self, sid: str) -> None:
        from hermes.v1 import session_pb2

        self.stub.CloseSession(session_pb2.CloseSessionRequest(session_id=sid), timeout=30)


def per_client(events: list[Any]) -> dict[str, tuple[int, float]]:
    """client id -> (completed count, sum of TTFT seconds) from COMPLETED events."""
    out: dict[str, tuple[int, float]] = {}
    for e in events:
        n, s = out.get(e.client_id, (0, 0.0))
        out[e.client_id] = (n + 1, s + e.result.ttft_s)
    return out


# ---------------------------------------------------------------- a real Prometheus


class Prometheus:
    """A real Prometheus server on loopback scraping the given targets every second."""

    def __init__(self, binary: str, targets: list[str], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: hermes\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "w"))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: " + (workdir / "prometheus.log").read_text()[-2000:])
            try:
                if scrape(self.url + "/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def stop(self) -> None:
        stop_process(self.proc)

    def query(self, expr: str) -> list[dict]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = json.loads(scrape(url))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for(self, expr: str, check: Any, timeout: float = 30.0) -> list[dict]:
        """Poll `expr` until check(result) is true; returns the result."""
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if check(result):
                return result
            time.sleep(0.5)
        raise AssertionError(f"{expr}: condition not met within {timeout}s; last result {result}")


@contextmanager
def prometheus(targets: list[str]) -> Iterator[Prometheus]:
    binary = require_tool("prometheus", "the Debian package `prometheus`")
    with tempfile.TemporaryDirectory(prefix="hermes-prom-") as tmp:
        prom = Prometheus(binary, targets, Path(tmp))
        try:
            yield prom
        finally:
            prom.stop()


def by_label(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"][label]: float(r["value"][1]) for r in result}
