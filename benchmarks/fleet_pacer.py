"""The fleet pacer's own cost per streamed token, without HTTP or sockets.

One simulated H100 paces 32 long streams; each pass runs the client's next step tick
(`Pacer._release_due`: one token to every stream) and hands the streams to their sinks
(`Pacer._flush`; here a sink that writes nothing). Prints the best of 7 runs of 2,000 ticks, in
microseconds of CPU per token, and its ratio to one empty Python call per token measured in the
same run (the floor of any per-token Python work). The front's real per-token cost adds a
socket send (`benchmarks/fleet_load.py` prints the host's floor for that).

    PYTHONPATH=. python benchmarks/fleet_pacer.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.fleet.app import fleet_spec  # noqa: E402
from server.fleet.pacer import Pacer  # noqa: E402
from sim_engine import Simulation  # noqa: E402

STREAMS, TICKS, RUNS = 32, 2000, 7


def pacer_us_per_token() -> float:
    sim = Simulation(fleet_spec("hetero-demo"), record_events=True)
    pacer = Pacer(sim, 1.0, clock=lambda: 0.0)
    jobs = []
    for _ in range(STREAMS):
        call = pacer.submit("h100-0", "Llama-3.1-8B", (10,), [10**6], 1)
        call.sink = lambda job: True
        job = call.jobs[0]
        job.generated = 1  # as after its first token
        pacer._tick_on(job, "h100-0", 0)
        jobs.append(job)
    best = float("inf")
    for _ in range(RUNS):
        made = sum(j.generated for j in jobs)
        cpu = time.process_time()
        for _ in range(TICKS):
            pacer._release_due(pacer._due[0][0])
            pacer._flush()
            pacer.passes += 1
        cpu = time.process_time() - cpu
        best = min(best, cpu / (sum(j.generated for j in jobs) - made))
    return best * 1e6


def call_us() -> float:
    def nothing(x: object) -> bool:
        return True

    best = float("inf")
    items = list(range(STREAMS))
    for _ in range(RUNS):
        cpu = time.process_time()
        for _ in range(TICKS):
            for x in items:
                nothing(x)
        best = min(best, (time.process_time() - cpu) / (TICKS * STREAMS))
    return best * 1e6


def main() -> int:
    pacer, floor = pacer_us_per_token(), call_us()
    print(f"pacer: {pacer:.3f} us of CPU per token ({STREAMS} streams on one client); "
          f"one empty Python call: {floor:.3f} us; ratio {pacer / floor:.1f}")
    print(f"fleet_pacer_us_per_token={pacer:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
