"""Co-simulation overhead on loopback, all measured in one run against one server process.

1. floor: a bare grpcio bidirectional echo (same server, same thread pool, bytes in/out);
2. lockstep Advance round trips on a session with nothing to simulate (each step
   processes no events), over the Session stream and over unary calls;
3. event delivery: events per second reaching a Python client when a whole run's
   events come back in batched Advance replies; the engine's own wall time for
   those calls (reported by the server process through the observer hook) is
   subtracted to isolate delivery (conversion, transfer, parsing);
4. external batch scheduling: the same workload with the built-in chunked scheduler
   (baseline) and with `scheduler.batching: external` answered over the stream by the
   vLLM-style batcher of examples/external_batcher.py (identical per-request results);
   reports externally scheduled steps per wall second and the wall-time ratio.

Prints latencies, external batch scheduling throughput and, last,
`lockstep_overhead_ratio=<stream Advance RT / echo RT>`.
Goals: ratio <= 1.5; >= 100,000 events/s delivered.

    PYTHONPATH=. python benchmarks/cosim_overhead.py            # full run (~1 min)
    PYTHONPATH=. python benchmarks/cosim_overhead.py --smoke    # seconds; asserts nothing about timing
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ECHO_METHOD = "/bench.Echo/Echo"
STEP_PRESET = "hetero-demo"  # injection-only: Advance by 1 us processes no events
EVENT_PRESET = "hetero-poisson"
BATCH_PRESET = "llama3-8b-h100"


# ---------------------------------------------------------------- server side (--serve)


class EngineClock:
    """Observer: wall seconds the engine spent in Advance, per session."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def on_session_advanced(self, session_id, sim, events=(), wall_seconds=None) -> None:
        self.seconds[session_id] = self.seconds.get(session_id, 0.0) + (wall_seconds or 0.0)


def serve() -> None:
    """Run a HermesServer plus a raw-bytes echo on the same gRPC server; print the port, then
    answer `engine SESSION_ID` lines on stdin with that session's engine seconds."""
    import grpc

    from server.api.app import HermesServer
    from server.config import ServerConfig

    def echo(requests, context):
        yield from requests

    echo_handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.stream_stream_rpc_method_handler(echo)})
    clock = EngineClock()
    server = HermesServer(ServerConfig(port=0, log_level="warning", max_events_per_reply=0),
                          observers=[clock], extra_handlers=(echo_handler,))
    print(server.start(), flush=True)
    for line in sys.stdin:  # until the parent closes our stdin
        print(clock.seconds.get(line.split()[-1], 0.0), flush=True)
    server.drain(1.0)


# ---------------------------------------------------------------- client side


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def describe(name: str, samples: list[float]) -> float:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"{name:<28} n={len(samples):<6} p50={p50 * 1e6:8.1f} us  p99={p99 * 1e6:8.1f} us  "
          f"mean={statistics.fmean(samples) * 1e6:8.1f} us")
    return p50


@contextmanager
def echo_roundtrip(target: str, payload: bytes) -> Iterator[Callable[[], object]]:
    """One lockstep round trip on a bare bidi stream (the same queue-fed pattern as the SDK)."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        end = object()
        replies = channel.stream_stream(ECHO_METHOD)(iter(outbox.get, end))

        def roundtrip() -> object:
            outbox.put(payload)
            return next(replies)

        yield roundtrip
        outbox.put(end)


@contextmanager
def advance_roundtrip(target: str, stream: bool) -> Iterator[Callable[[], object]]:
    """One Advance by 1 us on a session with nothing to simulate, through the SDK."""
    from client_sdk import Client

    with Client(target) as client, client.create_session(STEP_PRESET, stream=stream) as s:
        reply = s.advance(by_ns=1_000)
        assert reply.events_processed == 0 and not reply.events
        yield lambda: s.advance(by_ns=1_000)


def bench_lockstep(target: str, steps: int, payload: bytes, blocks: int = 10) -> dict[str, float]:
    """p50 round trip of each kind; the kinds alternate in blocks so they share the machine's load."""
    names = ("bare bidi echo (floor)", "Advance RT (stream)", "Advance RT (unary)")
    with echo_roundtrip(target, payload) as echo, advance_roundtrip(target, True) as stream, \
            advance_roundtrip(target, False) as unary:
        fns = (echo, stream, unary)
        samples: dict[str, list[float]] = {n: [] for n in names}
        for fn in fns:
            timed(fn, max(steps // 10, 20))  # warm up
        per_block = max(steps // blocks, 1)
        for _ in range(blocks):
            for name, fn in zip(names, fns, strict=True):
                samples[name].extend(timed(fn, per_block))
    return {name: describe(name, samples[name]) for name in names}


def bench_events(target: str, requests: int, engine_seconds: Callable[[str], float]) -> tuple[int, float, float]:
    """(events delivered, wall seconds of the Advance calls, engine seconds inside them)."""
    from client_sdk import Client, pb

    overrides = {"workload.num_requests": requests}
    with Client(target) as client, client.create_session(EVENT_PRESET, overrides=overrides, stream=True) as s:
        got = 0
        wall = 0.0
        while True:
            t0 = time.perf_counter()
            reply = s.advance()
            # read every event's kind, as a client dispatching on it would
            got += sum(1 for e in reply.events if e.kind)
            wall += time.perf_counter() - t0
            if reply.reason == pb.STOP_REASON_IDLE:
                break
        assert got == s.summary()["requests"]["completed"] * 4, got  # arrival, routed, first token, completed
        return got, wall, engine_seconds(s.id)


def bench_batching(target: str, requests: int) -> tuple[int, int, float, float]:
    """(simulated steps, batch decisions, external wall s, built-in wall s) on one workload."""
    sys.path.insert(0, str(ROOT / "examples"))
    from external_batcher import ContinuousBatcher

    from client_sdk import Client, pb

    base = {"workload.num_requests": requests, "clients[0].scheduler.max_num_batched_tokens": 512}
    with Client(target) as client:
        with client.create_session(BATCH_PRESET, seed=1, overrides=base, stream=True) as s:
            t0 = time.perf_counter()
            while s.advance().reason != pb.STOP_REASON_IDLE:
                pass
            builtin_wall = time.perf_counter() - t0
            builtin = s.summary()
        decisions = [0]
        ext = {**base, "clients[0].scheduler.batching": "external"}
        with client.create_session(BATCH_PRESET, seed=1, overrides=ext, stream=True) as s:
            t0 = time.perf_counter()
            summary = ContinuousBatcher(chunked=True).run(s, progress=lambda reply, n: decisions.__setitem__(0, n))
            wall = time.perf_counter() - t0
    assert summary["latency_s"] == builtin["latency_s"], "the external batcher must match the built-in policy"
    return summary["clients"][0]["steps"], decisions[0], wall, builtin_wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; finishes in seconds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=3000, help="round trips per lockstep measurement")
    parser.add_argument("--requests", type=int, default=3000, help="requests in the event-delivery run")
    args = parser.parse_args()
    if args.serve:
        serve()
        return 0
    steps, requests = (200, 100) if args.smoke else (args.steps, args.requests)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    try:
        target = f"127.0.0.1:{int(proc.stdout.readline())}"
        from client_sdk import Client
        from hermes.v1 import control_pb2, simulator_pb2

        Client(target).wait_ready()
        # the echo carries a payload the size of an encoded stream Advance command
        payload = simulator_pb2.Command(id=1, advance=control_pb2.AdvanceRequest(
            session_id="s-0123abcd", by_ns=1_000)).SerializeToString()
        print(f"loopback {target}, {os.cpu_count()} cpus, payload {len(payload)} B, {steps} round trips each")
        echo, stream, unary = bench_lockstep(target, steps, payload).values()
        def engine_seconds(session_id: str) -> float:
            proc.stdin.write(f"engine {session_id}\n")
            proc.stdin.flush()
            return float(proc.stdout.readline())

        events, wall, engine_s = bench_events(target, requests, engine_seconds)
        delivery_s = max(wall - engine_s, 1e-9)
        print(f"event delivery: {events} events in {wall:.3f} s through the server "
              f"({events / wall:,.0f} events/s end to end); engine inside those calls {engine_s:.3f} s "
              f"-> {events / delivery_s:,.0f} events/s delivered (goal >= 100,000)")
        steps_n, decided, ext_wall, builtin_wall = bench_batching(target, requests)
        print(f"external batching: {steps_n} steps, {decided} batch decisions in {ext_wall:.3f} s "
              f"-> {steps_n / ext_wall:,.0f} externally scheduled steps/s, {decided / ext_wall:,.0f} decisions/s; "
              f"built-in scheduler {builtin_wall:.3f} s; external/built-in wall ratio="
              f"{ext_wall / builtin_wall:.1f}")
        print(f"unary/stream Advance RT ratio={unary / stream:.2f}")
        print(f"lockstep_overhead_ratio={stream / echo:.2f}")
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
