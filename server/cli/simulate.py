"""`hermes simulate SPEC`: run a simulation offline and report what happened."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from sim_engine import MAX_TIME_NS, Simulation, SpecError, load_spec
from sim_engine.output import percentile_table, write_chrome_trace, write_requests_csv


def parse_overrides(items: list[str]) -> dict:
    """`--set workload.arrival.rate=8` pairs; values are parsed as YAML scalars."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError("--set", f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def format_summary(s: dict, wall_s: float | None = None) -> str:
    """A human-readable summary: requests, latency percentiles, throughput, clients."""
    r, t = s["requests"], s["throughput"]
    lines = [
        f"simulation '{s['name']}' (seed {s['seed']}): {s['sim_time_s']:.3f} simulated s"
        + (f" in {wall_s:.2f} wall s" if wall_s is not None else ""),
        f"requests: {r['injected']} injected, {r['completed']} completed, {r['dropped']} dropped, "
        f"{r['in_flight']} in flight, {r['preemptions']} preemptions",
    ]
    for reason, n in sorted(r["drop_reasons"].items()):
        lines.append(f"  dropped ({reason}): {n}")
    lines.append("")
    lines.append(f"{'latency (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}")
    for row in percentile_table(s):
        lines.append(f"{row[0]:<14}" + "".join(f"{v:>10}" for v in row[1:]))
    lines.append("")
    lines.append(f"throughput: {t['requests_per_s']:.2f} req/s, {t['output_tokens_per_s']:.1f} output tok/s, "
                 f"{t['total_tokens_per_s']:.1f} total tok/s; energy {s['energy_j'] / 3.6e6:.4f} kWh")
    lines.append("")
    lines.append(f"{'client':<18}{'hardware':<14}{'model':<16}{'util':>6}{'batch':>7}{'kv mean':>8}"
                 f"{'kv peak':>8}{'done':>8}{'preempt':>8}{'J/tok':>8}")
    for c in s["clients"]:
        lines.append(f"{c['id']:<18}{c['hardware']:<14}{c['model']:<16}{c['utilization']:>6.2f}"
                     f"{c['mean_batch_size']:>7.1f}{c['kv_mean_usage']:>8.2f}{c['kv_peak_usage']:>8.2f}"
                     f"{c['requests_completed']:>8}{c['preemptions']:>8}{c['energy_per_output_token_j']:>8.3f}")
    return "\n".join(lines)


def _progress_bar(sim: Simulation, quiet: bool):
    if quiet:
        return None, None
    from tqdm import tqdm

    total = None
    src = sim.source
    if src is not None and src.trace is not None:
        total = len(src.trace.prompt_tokens)
    if src is not None and src.limit < MAX_TIME_NS:
        total = min(total or src.limit, src.limit)
    bar = tqdm(total=total, unit="req", desc="simulating", file=sys.stderr, mininterval=0.5,
               disable=None)

    def update(now_ns: int, ended: int, injected: int) -> None:
        bar.n = ended
        bar.set_postfix_str(f"sim {now_ns / 1e9:.1f}s", refresh=False)
        bar.refresh()

    return bar, update


def run(args: argparse.Namespace) -> int:
    try:
        overrides = parse_overrides(args.set or [])
        if args.seed is not None:
            overrides["seed"] = args.seed
        # trace paths in a local spec resolve inside the spec file's folder (or the cwd for presets / text)
        data_dir = Path(args.spec).resolve().parent if Path(args.spec).is_file() else Path.cwd()
        spec = load_spec(args.spec, overrides, data_dir=data_dir)
        sim = Simulation(spec, record_trace=bool(args.trace))
    except SpecError as e:
        print(f"hermes simulate: invalid spec: {e}", file=sys.stderr)
        return 2
    bar, update = _progress_bar(sim, args.quiet)
    start = time.perf_counter()
    try:
        sim.run(progress=update)
    except SpecError as e:
        print(f"hermes simulate: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    summary = sim.summary()
    summary["wall_time_s"] = wall
    if not args.quiet:
        print(format_summary(summary, wall))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"summary JSON: {args.json}", file=sys.stderr)
    if args.requests_csv:
        n = write_requests_csv(sim, args.requests_csv)
        print(f"per-request CSV ({n} rows): {args.requests_csv}", file=sys.stderr)
    if args.trace:
        write_chrome_trace(sim, args.trace)
        print(f"Chrome/Perfetto trace: {args.trace} (open in ui.perfetto.dev)", file=sys.stderr)
    if args.plot:
        from .plots import plot_run

        plot_run(sim, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a simulation spec offline and print a summary",
        description="Run a simulation spec (YAML/JSON file or preset name) to the end and print a summary "
        "table. Exit code 2 on an invalid spec (the message names the field).",
    )
    p.add_argument("spec", help="spec file (YAML/JSON) or preset name (see `hermes presets`)")
    p.add_argument("--json", metavar="OUT", help="write the summary JSON here")
    p.add_argument("--requests-csv", metavar="OUT", help="write one CSV row per request here")
    p.add_argument("--trace", metavar="OUT", help="write a Chrome/Perfetto trace of client steps here")
    p.add_argument("--plot", metavar="OUT.png", help="write latency plots (needs matplotlib)")
    p.add_argument("--seed", type=int, help="override the spec's seed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec field by dotted path, e.g. workload.arrival.rate=8 (repeatable)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(func=run)
