"""examples/node/client.js (Node.js, @grpc/grpc-js + @grpc/proto-loader) against a real server.

Needs `node` and examples/node/node_modules (`npm ci`, done by scripts/install_test_deps.sh);
skipped without them unless CI is set.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_support import IN_CI, ROOT, Server, hermes_server, require_tool  # noqa: E402

NODE_DIR = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        msg = "examples/node/node_modules missing; run scripts/install_test_deps.sh (npm ci)"
        if IN_CI:
            pytest.fail(msg + " -- CI must have it")
        pytest.skip(msg)
    require_tool("node", "runs the Node.js client")
    with hermes_server(metrics=False) as srv:
        yield srv


def run_client(server: Server, *args: str) -> tuple[dict, str]:
    node = require_tool("node", "runs the Node.js client")
    out = subprocess.run([node, "client.js", "--target", server.target, *args], cwd=NODE_DIR, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"^completions=(\d+)$", out.stdout, re.M)
    assert m, out.stdout
    result = json.loads(out.stdout.strip().splitlines()[-2])
    assert result["completions"] == int(m.group(1))
    return result, out.stderr


def test_node_client_answers_external_routing_decisions(server: Server) -> None:
    result, _ = run_client(server, "--preset", "hetero-demo", "--external", "--injection-only", "--requests", "12")
    assert result["injected"] == 12
    assert result["completions"] == 12
    assert result["dropped"] == 0
    assert result["decisions"] >= 12  # at least one routing decision per request


def test_node_client_with_a_builtin_router(server: Server) -> None:
    result, _ = run_client(server, "--preset", "llama3-8b-h100", "--injection-only", "--requests", "9",
                           "--seed", "5")
    assert result["completions"] == 9 and result["decisions"] == 0


def test_node_client_runs_an_external_batcher(server: Server) -> None:
    result, _ = run_client(server, "--preset", "llama3-8b-h100", "--batcher", "--injection-only", "--requests", "10",
                           "--prompt-tokens", "3000", "--gap-ms", "5")
    assert result["completions"] == 10 and result["dropped"] == 0
    assert result["batches"] >= 10  # 3000-token prompts take two 2048-token chunks each
