"""The example external schedulers and `hermes demo` run end to end against real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from server_fixtures import ROOT, ServerProcess, env_with_root


@pytest.mark.parametrize("policy", ["round_robin", "least_kv"])
def test_example_scheduler_prints_the_summary(hermes_server: ServerProcess, policy: str) -> None:
    proc = subprocess.run([sys.executable, "examples/external_scheduler.py", "--target", hermes_server.address,
                           "--policy", policy, "--requests", "30", "--stream"],
                          cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["requests"]["completed"] == 30
    served = {c["id"]: c["requests_completed"] for c in summary["clients"]}
    assert len(served) == 3 and all(n > 0 for n in served.values())  # both policies spread the load


def test_demo_runs_the_main_job_quickly() -> None:
    proc = subprocess.run([sys.executable, "-m", "server.cli", "demo", "--requests", "60", "--metrics-port", "0"],
                          cwd=ROOT, env=env_with_root(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "external least_kv scheduler" in out
    assert "metrics: http://127.0.0.1:" in out
    assert "requests: 60 injected, 60 completed" in out
