"""16 concurrent sessions from 16 client processes all complete, each identical to its solo run.

Run as a script, this module is the client process: `python test_server_concurrency.py ADDRESS SEED`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server_fixtures import ROOT, ServerProcess, env_with_root

PRESET = "hetero-poisson"
N = 24
CLIENTS = 16


def drive(address: str, seed: int) -> dict:
    """One client's run: even seeds use an external round-robin scheduler on the stream,
    odd seeds the built-in router over unary calls."""
    from client_sdk import Client, RoundRobinScheduler, pb

    external = seed % 2 == 0
    overrides = {"workload.num_requests": N, "router": "external" if external else "round_robin"}
    with Client(address, timeout=120) as client:
        with client.create_session(PRESET, seed=seed, overrides=overrides, stream=external) as s:
            if external:
                return RoundRobinScheduler().run(s)
            while s.advance().reason != pb.STOP_REASON_IDLE:
                pass
            return s.summary()


def test_sixteen_client_processes_each_match_their_solo_run(hermes_server: ServerProcess) -> None:
    procs = [subprocess.Popen([sys.executable, str(Path(__file__)), hermes_server.address, str(seed)],
                              cwd=ROOT, env=env_with_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in range(CLIENTS)]
    concurrent = {}
    for seed, p in enumerate(procs):
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err
        concurrent[seed] = json.loads(out)
    for seed in range(CLIENTS):
        solo = drive(hermes_server.address, seed)
        assert concurrent[seed] == solo, f"seed {seed} differs from its solo run"
        assert solo["requests"]["completed"] + solo["requests"]["dropped"] == N
    assert len({json.dumps(s, sort_keys=True) for s in concurrent.values()}) == CLIENTS


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(drive(sys.argv[1], int(sys.argv[2]))))
