"""Plots of a finished run (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from sim_engine import Simulation
from sim_engine.summary import request_metrics


def plot_run(sim: Simulation, path: str) -> None:
    """TTFT/TPOT/E2E distributions and TTFT over time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = request_metrics(sim)
    records = sim.records.arrays()
    arrival = records["arrival_ns"][records["status"] == 1] / 1e9
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, color in (("ttft", "C0"), ("e2e", "C2")):
        v = np.sort(m[name])
        if v.size:
            axes[0].plot(v * 1e3, np.arange(1, v.size + 1) / v.size, label=name.upper(), color=color)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("latency (ms)")
    axes[0].set_ylabel("fraction of requests")
    axes[0].set_title("latency CDF")
    axes[0].legend()
    tpot = np.sort(m["tpot"][m["output_tokens"] > 1])
    if tpot.size:
        axes[1].plot(tpot * 1e3, np.arange(1, tpot.size + 1) / tpot.size, color="C1")
    axes[1].set_xlabel("TPOT (ms)")
    axes[1].set_title("time per output token CDF")
    axes[2].scatter(arrival, m["ttft"] * 1e3, s=2, alpha=0.5)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("arrival (simulated s)")
    axes[2].set_ylabel("TTFT (ms)")
    axes[2].set_title("TTFT over the run")
    fig.suptitle(f"{sim.spec.name}: {m['e2e'].size} completed requests")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
