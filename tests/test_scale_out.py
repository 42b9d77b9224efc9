"""Scale-out: sessions placed over three `hermes serve --shard-id` processes on loopback,
calls sent to their owner, and sessions rebuilt by replay when a replica dies or drains."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator

import pytest
from server_fixtures import ServerProcess, start_server

from client_sdk import Client, FailedPrecondition
from client_sdk.replay import ReplayMismatch
from hermes.v1 import common_pb2 as pb

pytestmark = pytest.mark.slow

SPEC = "hetero-poisson"
OVERRIDES = {"workload.num_requests": 200}
STEP_NS = 200_000_000


@pytest.fixture()
def shards() -> Iterator[list[ServerProcess]]:
    servers = [start_server("--shard-id", name, "--drain-mode", "handoff", "--drain-grace", "2")
               for name in ("a", "b", "c")]
    yield servers
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def run_to_end(session, steps: int = 40) -> dict:
    """Advance in fixed steps (many calls, so a failure lands mid-run), then to idle.

    (A time target is always reached, even past the last event: only an open Advance ends IDLE.)"""
    for _ in range(steps):
        session.advance(by_ns=STEP_NS)
    while session.advance().reason != pb.STOP_REASON_IDLE:
        pass
    return session.summary()


def undisturbed(address: str, seed: int) -> str:
    with Client(address) as c, c.create_session(SPEC, seed=seed, overrides=OVERRIDES) as s:
        return json.dumps(run_to_end(s), sort_keys=True)


def test_sessions_spread_and_survive_a_killed_replica(shards: list[ServerProcess]) -> None:
    want = {seed: undisturbed(shards[0].address, seed) for seed in (1, 2)}
    with Client([s.address for s in shards], placement_seed=7, digest_every=4) as c:
        sessions = [c.create_session(SPEC, seed=1 + i % 2, overrides=OVERRIDES, stream=i % 3 == 0)
                    for i in range(20)]
        owners = {s.id.split(".")[0] for s in sessions}
        assert owners == {"a", "b", "c"}, f"sessions were not spread: {owners}"
        for s in sessions:  # every session a few steps in, then a replica dies
            for _ in range(4):
                s.advance(by_ns=STEP_NS)
        victim = shards[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        on_victim = [s for s in sessions if s.id.startswith("b.")]
        assert on_victim
        for i, s in enumerate(sessions):
            got = json.dumps(run_to_end(s), sort_keys=True)
            assert got == want[1 + i % 2], f"{s.id}: summary differs from an undisturbed run"
        for s in on_victim:
            assert s._t.rehomed == 1 and not s._t.physical_id.startswith("b.")
        for s in sessions:
            s.close()


def test_forks_and_snapshots_survive_rehoming(shards: list[ServerProcess]) -> None:
    want = undisturbed(shards[0].address, 5)
    with Client([s.address for s in shards], placement_seed=3, digest_every=2) as c:
        parent = c.create_session(SPEC, seed=5, overrides=OVERRIDES)
        parent.advance(by_ns=3 * STEP_NS)
        snap = parent.snapshot()
        parent.advance(by_ns=5 * STEP_NS)
        child = parent.fork()
        assert child.id.split(".")[0] == parent.id.split(".")[0], "a fork stays on its parent's shard"
        parent.restore(snap)
        owner = next(s for s in shards if s.address == c.owner_of(parent.id))
        owner.proc.send_signal(signal.SIGKILL)
        owner.proc.wait()
        assert json.dumps(run_to_end(parent), sort_keys=True) == want
        assert json.dumps(run_to_end(child), sort_keys=True) == want
        assert child.state().now_ns == parent.state().now_ns


def test_a_draining_replica_hands_its_sessions_over(shards: list[ServerProcess]) -> None:
    want = undisturbed(shards[0].address, 1)
    with Client([s.address for s in shards], placement_seed=11) as c:
        sessions = [c.create_session(SPEC, seed=1, overrides=OVERRIDES) for _ in range(9)]
        leaving = next(s for s in shards if any(x.id.startswith("c.") for x in sessions))
        for s in sessions:
            s.advance(by_ns=STEP_NS)
        leaving.proc.send_signal(signal.SIGTERM)
        # during the grace period the replica still serves its sessions but takes no new ones
        assert not c.info_of(leaving.address).accepting_sessions
        for s in sessions:
            assert json.dumps(run_to_end(s), sort_keys=True) == want
        assert leaving.proc.wait(timeout=30) == 0


def test_a_call_to_the_wrong_shard_names_the_owner(shards: list[ServerProcess]) -> None:
    with Client(shards[0].address) as a, Client(shards[1].address) as b:
        s = a.create_session(SPEC, overrides=OVERRIDES)
        assert s.id.startswith("a.")
        with pytest.raises(FailedPrecondition, match="owned by shard 'a'"):
            b.attach(s.id)
        info = a.info()
        assert info.shard_id == "a" and info.sessions == 1 and info.accepting_sessions
        s.close()


def test_a_replay_that_does_not_reproduce_the_state_stops(shards: list[ServerProcess]) -> None:
    with Client([s.address for s in shards], placement_seed=2, digest_every=1) as c:
        s = c.create_session(SPEC, seed=1, overrides=OVERRIDES)
        s.advance(by_ns=STEP_NS)
        s.advance(by_ns=STEP_NS)
        s._t.log.digests[1] = "0" * 64  # as if the first command had led elsewhere
        owner = next(x for x in shards if x.address == s._t.target)
        owner.proc.send_signal(signal.SIGKILL)
        owner.proc.wait()
        with pytest.raises(ReplayMismatch, match="digest differs after command 1"):
            s.advance(by_ns=STEP_NS)


def test_replay_across_server_versions_needs_consent(shards: list[ServerProcess]) -> None:
    with Client([s.address for s in shards], placement_seed=4) as c:
        s = c.create_session(SPEC, seed=1, overrides=OVERRIDES)
        s.advance(by_ns=STEP_NS)
        s._t.log.server_version = "0.0.1"  # as if created by an older server
        owner = next(x for x in shards if x.address == s._t.target)
        owner.proc.send_signal(signal.SIGKILL)
        owner.proc.wait()
        with pytest.raises(FailedPrecondition, match="allow_cross_version_replay"):
            s.advance(by_ns=STEP_NS)
        s._t.allow_cross_version = True
        assert s.advance(by_ns=STEP_NS).time_ns == 2 * STEP_NS


def test_concurrent_sessions_on_three_shards(shards: list[ServerProcess]) -> None:
    """Placement and re-homing are thread-safe enough for one client shared by threads."""
    want = undisturbed(shards[0].address, 1)
    results: list[str] = []
    with Client([s.address for s in shards], placement_seed=5) as c:
        def work() -> None:
            with c.create_session(SPEC, seed=1, overrides=OVERRIDES) as s:
                results.append(json.dumps(run_to_end(s), sort_keys=True))

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert results == [want] * 6
