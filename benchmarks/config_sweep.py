"""Sanity sweep of the user-facing configuration space: every preset combination a user would try.

    PYTHONPATH=. python benchmarks/config_sweep.py                 # analytic checks, every config
    PYTHONPATH=. python benchmarks/config_sweep.py --sim           # + static-batch and offline runs
    PYTHONPATH=. python benchmarks/config_sweep.py --hardware H100-SXM --model Llama-3.1-70B --sim -v

For hardware preset (GPUs) x decoder model preset x engine profile (vllm, sglang, trtllm, vllm-v0)
x dtype (bf16; fp8 where the part has an fp8 peak) x TP in {1, 2, 4, 8}, the client is built from a
spec as a user writes it (``{hardware, model, tp, engine, dtype}``, nothing else). A TP is "one a
deployment would use" when the datasheet memory holds the weight shard with 10% to spare; such a
config being rejected is flagged. Each built config reports its KV blocks, decode step times
(batch 1 and 64), prefill step times (128, 1024, 8192 tokens), and with ``--sim`` a static batch
(1 x 128/128, 64 x 1024/1024: TTFT, TPOT) and an offline max-throughput run (256 x 1024/256: output
tokens/s per GPU). Physics checks (flags):

* decode step below the HBM roofline (weight shard / peak bandwidth), prefill below the compute
  roofline (2 x active params x tokens / (tp x peak)), or prefill of 8192 tokens under 25% of it;
* KV capacity not positive, or above (memory - weight shard) / KV bytes per token;
* step time not falling with TP (decode batch 1), fp8 slower than bf16, prefill not growing with
  the prompt, H200 slower than H100, L40S decode faster than A100-80GB, offline throughput per GPU
  above the bandwidth roofline at the engine's batch.

Nothing here is compared with a published number: these are invariants of the physics. The last
line is ``config_sweep_flags=N`` (flagged configs + cross-config flags; docs/FIDELITY.md says which
remaining flags are understood).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim_engine import Simulation, load_spec  # noqa: E402
from sim_engine.engines import PROFILES  # noqa: E402
from sim_engine.errors import SpecError  # noqa: E402
from sim_engine.hardware import HARDWARE  # noqa: E402
from sim_engine.models import DTYPE_BYTES, MODELS  # noqa: E402
from sim_engine.request import RequestInput  # noqa: E402
from sim_engine.spec import build_client_parts  # noqa: E402
from sim_engine.summary import request_metrics  # noqa: E402

ENGINES = ("vllm", "sglang", "trtllm", "vllm-v0")
TPS = (1, 2, 4, 8)
GPUS = tuple(n for n, d in HARDWARE.items() if d.kind == "gpu")
DECODERS = tuple(n for n, m in MODELS.items() if m.kind == "decoder")


@dataclass
class Row:
    """One configuration and what the sweep measured on it."""

    hw: str
    model: str
    engine: str
    dtype: str
    tp: int
    fits: bool  # the weight shard fits the datasheet memory with 10% to spare
    error: str = ""
    kv_blocks: int = 0
    kv_tokens: int = 0
    t: dict[str, float] = field(default_factory=dict)  # step times, s
    sim: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.hw}/{self.model}/{self.engine}/{self.dtype}/tp{self.tp}"


def configs(hws: Sequence[str], models: Sequence[str], engines: Sequence[str]) -> Iterator[Row]:
    for hw in hws:
        dev = HARDWARE[hw]
        dtypes = ("bf16", "fp8") if "fp8" in dev.tflops else ("bf16",)
        for name in models:
            m = MODELS[name]
            for dtype in dtypes:
                wbytes = m.param_count() * DTYPE_BYTES[dtype]
                for tp in TPS:
                    if m.n_heads % tp:
                        continue  # no engine offers it; the spec rejects it (tested elsewhere)
                    fits = wbytes / tp <= 0.9 * dev.mem_gb * 1e9
                    smaller_fits = tp > 1 and wbytes / (tp // 2) <= 0.5 * dev.mem_gb * 1e9
                    if smaller_fits and tp > 2:
                        continue  # nobody shards a model that fits twice over across 4+ more GPUs
                    for eng in engines:
                        yield Row(hw, name, eng, dtype, tp, fits)


def client_doc(r: Row, scheduler: dict | None = None) -> dict:
    client = {"id": "c", "hardware": r.hw, "model": r.model, "tp": r.tp, "engine": r.engine, "dtype": r.dtype}
    if scheduler:
        client["scheduler"] = scheduler
    return {"name": "sweep", "seed": 1, "clients": [client], "router": "round_robin",
            "workload": {"arrival": {"process": "none"}}}


def measure(r: Row) -> None:
    """Build the client as the simulation does; step times from its performance model."""
    try:
        spec = load_spec(client_doc(r))
    except SpecError as e:
        r.error = f"{e.field}: {e.reason}"
        return
    cs = spec.clients[0]
    perf, cap = build_client_parts(cs, "c")
    r.kv_tokens, r.kv_blocks = cap, cap // cs.scheduler.block_size
    for b, ctx in ((1, 128), (1, 4096), (64, 1024)):
        r.t[f"dec{b}@{ctx}"] = perf.step([], b, b * ctx).time_s
    for n in (128, 1024, 8192):
        r.t[f"pf{n}"] = perf.step([(0, n)], 0, 0).time_s
    r.t["_max_seqs"] = cs.scheduler.max_num_seqs


def simulate(r: Row) -> None:
    """Static batches and a short offline run; TTFT/TPOT in s, tokens/s per GPU."""
    def run(n: int, p: int, o: int, scheduler: dict | None) -> dict[str, float]:
        sim = Simulation(load_spec(client_doc(r, scheduler)))
        sim.inject([RequestInput(0, p, o) for _ in range(n)])
        sim.run()
        m = request_metrics(sim)
        if m["e2e"].size < n:
            return {"done": float(m["e2e"].size)}
        span = float(m["e2e"].max())
        return {"ttft": float(m["ttft"].mean()), "tpot": float(m["tpot"].mean()),
                "tok_s_gpu": float(m["output_tokens"].sum()) / span / r.tp, "done": float(n)}

    for n, p, o in ((1, 128, 128), (64, 1024, 1024)):
        for k, v in run(n, p, o, {"batching": "static", "max_num_seqs": n}).items():
            r.sim[f"static{n}_{k}"] = v
    for k, v in run(256, 1024, 256, None).items():
        r.sim[f"offline_{k}"] = v


def check(r: Row) -> None:
    """Per-config physics invariants."""
    if r.error:
        if r.fits:
            r.flags.append(f"REJECTED although the weights fit: {r.error}")
        return
    dev, m = HARDWARE[r.hw], MODELS[r.model]
    wb = DTYPE_BYTES[r.dtype]
    shard = m.param_count() * wb / r.tp
    bw, peak = dev.mem_bw_gbs * 1e9, dev.peak_flops(r.dtype)
    floor = m.active_params_per_token() * wb / r.tp / bw  # one token reads only the experts it uses
    if r.t["dec1@128"] < floor:
        r.flags.append(f"decode b=1 {r.t['dec1@128'] * 1e3:.2f} ms < HBM floor {floor * 1e3:.2f} ms")
    kv_per_tok = m.kv_bytes_per_token() / m.kv_bytes_per_elem  # elements; bytes below
    kv_per_tok *= wb if PROFILES[r.engine].quantised_kv else DTYPE_BYTES["bf16"]
    if not m.is_mla:
        kv_per_tok /= min(r.tp, m.n_kv_heads)
    upper = (dev.mem_bytes - shard) / kv_per_tok
    if r.kv_blocks <= 0 or r.kv_tokens > upper:
        r.flags.append(f"KV tokens {r.kv_tokens} outside (0, {upper:.0f}]")
    act = m.active_params_per_token()
    for n in (1024, 8192):
        roof = 2 * act * n / (r.tp * peak)
        if r.t[f"pf{n}"] < roof:
            r.flags.append(f"prefill {n} {r.t[f'pf{n}'] * 1e3:.1f} ms < compute roofline {roof * 1e3:.1f} ms")
    roof = 2 * act * 8192 / (r.tp * dev.peak_flops("bf16" if dev.name.startswith("A100") else r.dtype))
    if r.t["pf8192"] > 4 * roof + 0.05:
        r.flags.append(f"prefill 8192 {r.t['pf8192'] * 1e3:.0f} ms > 4x compute roofline {roof * 1e3:.0f} ms")
    if not r.t["pf128"] < r.t["pf1024"] < r.t["pf8192"]:
        r.flags.append("prefill time not increasing with prompt length")
    if r.sim.get("offline_tok_s_gpu"):
        b = r.t["_max_seqs"]
        cap = b / (m.active_params_per_token() * wb / r.tp / bw) / r.tp
        if r.sim["offline_tok_s_gpu"] > cap:
            r.flags.append(f"offline {r.sim['offline_tok_s_gpu']:.0f} tok/s/GPU > bandwidth roofline {cap:.0f}")
    for k in ("static1", "static64", "offline"):
        if k + "_done" in r.sim and k + "_tpot" not in r.sim:
            r.flags.append(f"{k}: only {r.sim[k + '_done']:.0f} requests completed")


def cross_checks(rows: Sequence[Row]) -> list[str]:
    """Invariants between configs: TP, dtype, and hardware monotonicity of decode step time."""
    by = {(r.hw, r.model, r.engine, r.dtype, r.tp): r for r in rows if not r.error}
    out = []
    for (hw, model, eng, dtype, tp), r in by.items():
        lower = by.get((hw, model, eng, dtype, tp // 2)) if tp > 1 else None
        if lower and r.t["dec1@128"] >= lower.t["dec1@128"] and HARDWARE[hw].scaleup_bw_gbs > 100:
            out.append(f"{r.key}: decode b=1 {r.t['dec1@128'] * 1e3:.2f} ms not below tp{tp // 2} "
                       f"{lower.t['dec1@128'] * 1e3:.2f} ms")
        bf = by.get((hw, model, eng, "bf16", tp)) if dtype == "fp8" else None
        if bf:
            for k in ("dec1@128", "dec64@1024", "pf8192"):
                if r.t[k] > bf.t[k] * 1.001:
                    out.append(f"{r.key}: fp8 {k} {r.t[k] * 1e3:.2f} ms slower than bf16 {bf.t[k] * 1e3:.2f} ms")
        for fast, slow, keys in (("H200", "H100-SXM", ("dec1@128", "dec64@1024", "pf8192")),
                                 ("A100-80GB", "L40S", ("dec1@128", "dec64@1024")),
                                 ("H100-SXM", "A100-80GB", ("dec1@128", "dec64@1024", "pf8192"))):
            if hw != fast:
                continue
            other = by.get((slow, model, eng, dtype, tp))
            if other:
                for k in keys:
                    if r.t[k] > other.t[k]:
                        out.append(f"{r.key}: {k} {r.t[k] * 1e3:.2f} ms slower than {slow} {other.t[k] * 1e3:.2f} ms")
    return out


def fmt(r: Row) -> str:
    if r.error:
        return f"{r.key:58s} rejected: {r.error[:110]}"
    s = (f"{r.key:58s} kv_blocks={r.kv_blocks:>8d} dec1={r.t['dec1@128'] * 1e3:6.2f}ms "
         f"dec64={r.t['dec64@1024'] * 1e3:6.2f}ms pf1k={r.t['pf1024'] * 1e3:7.1f}ms pf8k={r.t['pf8192'] * 1e3:7.1f}ms")
    if r.sim:
        s += (f" | s1 ttft={r.sim.get('static1_ttft', 0) * 1e3:.1f}ms tpot={r.sim.get('static1_tpot', 0) * 1e3:.2f}ms"
              f" s64 ttft={r.sim.get('static64_ttft', 0) * 1e3:.0f}ms tpot={r.sim.get('static64_tpot', 0) * 1e3:.2f}ms"
              f" off={r.sim.get('offline_tok_s_gpu', 0):.0f}tok/s/gpu")
    return s


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hardware", nargs="*", default=list(GPUS), choices=GPUS)
    ap.add_argument("--model", nargs="*", default=list(DECODERS), choices=DECODERS)
    ap.add_argument("--engine", nargs="*", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--sim", action="store_true", help="also run the static batches and the offline run")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every config, not only flagged ones")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = list(configs(a.hardware, a.model, a.engine))
    for r in rows:
        measure(r)
        if a.sim and not r.error:
            simulate(r)
        check(r)
        if a.verbose or r.flags:
            print(fmt(r))
            for f in r.flags:
                print(f"    FLAG {f}")
    cross = cross_checks(rows)
    for line in cross:
        print(f"FLAG {line}")
    rejected = sum(bool(r.error) for r in rows)
    flagged = sum(bool(r.flags) for r in rows)
    print(f"{len(rows)} configs, {rejected} rejected ({sum(bool(r.error) and r.fits for r in rows)} that fit), "
          f"{flagged} flagged, {len(cross)} cross-config flags, {time.perf_counter() - t0:.0f} s")
    print(f"config_sweep_flags={flagged + len(cross)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
