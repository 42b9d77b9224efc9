"""`hermes simulate SPEC`: run a simulation offline and report what happened.

Everything that can be checked before the run is: the options, the output paths (their
folders exist and are writable), the optional dependencies (matplotlib for --plot) and
the spec (the engine's one validator). A bad input costs one line on stderr naming the
option or field, never a traceback. A run that completed nothing says so and exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import yaml

from sim_engine import MAX_TIME_NS, Simulation, SpecError, estimate_memory_bytes, load_spec
from sim_engine.output import percentile_table, write_chrome_trace, write_requests_csv

PROG = "hermes simulate"
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_NO_RESULT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 3, 130, 141
# option -> attribute of the parsed args, in the order outputs are written
OUTPUT_OPTIONS = {"--json": "json", "--requests-csv": "requests_csv", "--trace": "trace", "--plot": "plot"}
MAX_MESSAGE_CHARS = 400

EPILOG = """\
outputs (checked before the run: the folder must exist and be writable):
  --json OUT          the summary as JSON (what the table shows, and more)
  --requests-csv OUT  one row per request: arrival, stages, TTFT, TPOT, E2E, client
  --trace OUT         a Chrome/Perfetto trace of the clients' steps (ui.perfetto.dev)
  --plot OUT          latency CDFs and TTFT over time (.png, .pdf, .svg, ...; needs matplotlib:
                      pip install 'hermes-sim[plots]')

exit codes:
  0  the run completed requests (the table is a measurement)
  1  internal error (a bug; --debug shows the traceback)
  2  bad input: option, output path, missing dependency or spec field (one line on stderr)
  3  the run completed no request (all dropped, none arrived, none finished): no latency
     is printed, the reason is
  130 interrupted (Ctrl-C)

examples:
  hermes simulate llama3-8b-h100
  hermes simulate examples/specs/hetero-llama70b.yaml --set workload.num_requests=200 --json out.json
  hermes presets specs        # the preset names
"""


class BadInput(Exception):
    """A user error found before or around the run: `where` is the option or spec field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def one_line(text: str) -> str:
    """Collapse a message to one bounded line (YAML errors quote the source over several lines)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 3] + "..."


def fail(code: int, message: str) -> int:
    print(f"{PROG}: {one_line(message)}", file=sys.stderr)
    return code


def parse_overrides(items: list[str]) -> dict:
    """`--set workload.arrival.rate=8` pairs; values are parsed as YAML scalars."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--set", f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise SpecError(f"--set {key.strip()}", f"value is not valid YAML: {one_line(str(e))}") from None
    return out


# ---------------------------------------------------------------- checks before the run


def check_options(args: argparse.Namespace) -> None:
    if args.max_memory_gb is not None and not args.max_memory_gb > 0:
        raise BadInput("--max-memory-gb", f"must be > 0, got {args.max_memory_gb}")


def check_outputs(args: argparse.Namespace) -> None:
    """Each output path can be written (see check_output_paths); none overwrites the spec."""
    spec_path = Path(args.spec).resolve() if Path(args.spec).is_file() else None
    paths = {option: getattr(args, attr, None) for option, attr in OUTPUT_OPTIONS.items()}
    check_output_paths(paths, protect=spec_path)


def check_output_paths(paths: dict[str, str | None], protect: Path | None = None) -> None:
    """option -> path: its folder exists and is writable, it is not a folder, two options do
    not name the same file, and none is `protect` (an input)."""
    seen: dict[Path, str] = {}
    for option, raw in paths.items():
        if raw is None:
            continue
        if not raw.strip():
            raise BadInput(option, "empty path")
        path = Path(raw)
        resolved = path.resolve()
        if resolved in seen:
            raise BadInput(option, f"{raw} is also the {seen[resolved]} output")
        seen[resolved] = option
        if resolved == protect:
            raise BadInput(option, f"{raw} is the spec file; it would be overwritten")
        if path.is_dir():
            raise BadInput(option, f"{raw} is a folder; name a file")
        folder = path.parent
        if not folder.exists():
            raise BadInput(option, f"folder {str(folder)!r} does not exist")
        if not folder.is_dir():
            raise BadInput(option, f"{str(folder)!r} is not a folder")
        writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK | os.X_OK)
        if not writable:
            raise BadInput(option, f"{raw} is not writable")


def check_plot(args: argparse.Namespace) -> None:
    """--plot needs matplotlib and a format it writes; found out now, not after the run."""
    if args.plot is None:
        return
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        raise BadInput("--plot", "needs matplotlib, which is not installed (pip install 'hermes-sim[plots]')") \
            from None
    formats = FigureCanvasAgg.get_supported_filetypes()
    if Path(args.plot).suffix.lower().lstrip(".") not in formats:
        raise BadInput("--plot", f"{args.plot}: name a file ending in one of "
                                 f"{', '.join('.' + f for f in sorted(formats))}")


def spec_data_dir(args: argparse.Namespace) -> Path | None:
    """Where the spec may read data files (traces) from: --data-dir, else the spec file's folder."""
    if args.data_dir is not None:
        folder = Path(args.data_dir)
        if not folder.is_dir():
            raise BadInput("--data-dir", f"{args.data_dir} is not a folder")
        return folder
    path = Path(args.spec)
    return path.resolve().parent if path.is_file() else None


def load(args: argparse.Namespace) -> Any:
    """The validated spec (SpecError names the field)."""
    if Path(args.spec).is_dir():
        raise SpecError("spec", f"{args.spec} is a folder, not a spec file")
    overrides = parse_overrides(args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    spec = load_spec(args.spec, overrides, data_dir=spec_data_dir(args))
    check_memory(spec, args.max_memory_gb)
    return spec


def check_memory(spec: Any, limit_gb: float | None) -> None:
    """Refuse a spec whose estimated memory exceeds the limit, naming the field that dominates."""
    limit = limit_gb * 2**30 if limit_gb is not None else physical_memory_bytes() * 0.8
    result = estimate_memory_bytes(spec)
    need = float(result.total_bytes)
    if limit and need > limit:
        where = result.dominant_field
        raise SpecError(where, f"the run needs an estimated {need / 2**30:.1f} GiB, more than the limit of "
                               f"{limit / 2**30:.1f} GiB (--max-memory-gb)")


def physical_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0.0


# ---------------------------------------------------------------- reporting


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
    if r["completed"]:
        lines.append(f"{'latency (ms)':<14}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}")
        for row in percentile_table(s):
            lines.append(f"{row[0]:<14}" + "".join(f"{v:>10}" for v in row[1:]))
    else:
        lines.append("latency: none (no request completed)")
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


def no_result(summary: dict) -> str | None:
    """Why the run is not a measurement (nothing completed), or None when it is."""
    r = summary["requests"]
    if r["completed"]:
        return None
    if not r["injected"]:
        return (f"no request arrived in {summary['sim_time_s']:.3f} simulated s "
                "(check workload.arrival, workload.num_requests and the run's duration)")
    if r["dropped"] == r["injected"]:
        reasons = ", ".join(f"{k} x{n}" for k, n in sorted(r["drop_reasons"].items())) or "no reason recorded"
        return f"every request was dropped ({r['dropped']} of {r['injected']}: {reasons})"
    return (f"no request completed: {r['injected']} injected, {r['dropped']} dropped, "
            f"{r['in_flight']} still in flight when the run ended")


def drop_warning(summary: dict) -> str | None:
    r = summary["requests"]
    if r["completed"] and r["dropped"]:
        reasons = ", ".join(f"{k} x{n}" for k, n in sorted(r["drop_reasons"].items()))
        return f"warning: {r['dropped']} of {r['injected']} requests were dropped ({reasons})"
    return None


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


def write_outputs(args: argparse.Namespace, sim: Simulation, summary: dict, completed: bool) -> None:
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
        if not completed:
            print(f"plot: not written ({args.plot}): no completed request to plot", file=sys.stderr)
            return
        from .plots import plot_run

        plot_run(sim, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)


# ---------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:
        return fail(EXIT_INTERRUPTED, "interrupted")
    except BrokenPipeError:  # `hermes simulate ... | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as e:  # a bug: one line, the traceback only when asked for
        if args.debug:
            traceback.print_exc()
        return fail(EXIT_INTERNAL, f"internal error: {type(e).__name__}: {e} (rerun with --debug for the "
                                   "traceback, and please report it)")


def _run(args: argparse.Namespace) -> int:
    try:
        check_options(args)
        check_outputs(args)
        check_plot(args)
        spec = load(args)
        sim = Simulation(spec, record_trace=bool(args.trace))
    except BadInput as e:
        return fail(EXIT_BAD_INPUT, str(e))
    except SpecError as e:
        return fail(EXIT_BAD_INPUT, f"invalid spec: {e}")
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, OSError, yaml.YAMLError) as e:
        # the validator should have named the field; still a bad spec, not a crash
        return fail(EXIT_BAD_INPUT, f"invalid spec: {type(e).__name__}: {e}")
    bar, update = _progress_bar(sim, args.quiet)
    start = time.perf_counter()
    try:
        sim.run(progress=update)
    except SpecError as e:
        return fail(EXIT_BAD_INPUT, f"invalid spec: {e}")
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    summary = sim.summary()
    summary["wall_time_s"] = wall
    if not args.quiet:
        print(format_summary(summary, wall))
    why = no_result(summary)
    try:
        write_outputs(args, sim, summary, completed=why is None)
    except OSError as e:
        return fail(EXIT_BAD_INPUT, f"cannot write an output: {e}")
    if why is not None:
        return fail(EXIT_NO_RESULT, f"no result: {why}")
    warning = drop_warning(summary)
    if warning:
        print(f"{PROG}: {warning}", file=sys.stderr)
    return EXIT_OK


def _one_line_usage_error(message: str) -> NoReturn:
    """argparse errors as one line (not the usage block), exit 2."""
    print(f"{PROG}: {one_line(message)} (see `{PROG} --help`)", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="run a simulation spec offline and print a summary",
        description="Run a simulation spec (a YAML/JSON file or a preset name) to the end and print a "
        "summary: requests, latency percentiles (TTFT, TPOT, ITL, E2E, queue), throughput, energy and "
        "one line per client. Inputs and output paths are checked before the run.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="spec file (YAML/JSON) or preset name (see `hermes presets specs`)")
    p.add_argument("--json", metavar="OUT", help="write the summary JSON here")
    p.add_argument("--requests-csv", metavar="OUT", help="write one CSV row per request here")
    p.add_argument("--trace", metavar="OUT", help="write a Chrome/Perfetto trace of client steps here")
    p.add_argument("--plot", metavar="OUT.png", help="write latency plots (needs matplotlib)")
    p.add_argument("--seed", type=int, help="override the spec's seed")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec field by dotted path, e.g. workload.arrival.rate=8 (repeatable)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder the spec's trace files are read from (default: the spec file's folder)")
    p.add_argument("--max-memory-gb", type=float, metavar="GB",
                   help="refuse specs estimated to need more memory (default: 80%% of this machine's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no table")
    p.add_argument("--debug", action="store_true", help="print the traceback of an internal error")
    p.error = _one_line_usage_error  # type: ignore[method-assign]
    p.set_defaults(func=run)
