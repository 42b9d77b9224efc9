"""`hermes presets`: list the hardware, model and whole-spec presets."""

from __future__ import annotations

import argparse
import json

from sim_engine import spec_presets
from sim_engine.hardware import HARDWARE
from sim_engine.models import MODELS


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else ["hardware", "models", "specs"]
    if args.json:
        out = {}
        if "hardware" in kinds:
            out["hardware"] = sorted(HARDWARE)
        if "models" in kinds:
            out["models"] = sorted(MODELS)
        if "specs" in kinds:
            out["specs"] = sorted(spec_presets())
        print(json.dumps(out, indent=2))
        return 0
    if "hardware" in kinds:
        print("hardware presets (bf16 dense TFLOPS, memory GB, memory GB/s, scale-up GB/s):")
        for name, d in sorted(HARDWARE.items()):
            tf = d.tflops.get("bf16", d.tflops.get("fp16", max(d.tflops.values())))
            print(f"  {name:<18}{d.kind:<5}{tf:>8.0f}{d.mem_gb:>8.0f}{d.mem_bw_gbs:>8.0f}{d.scaleup_bw_gbs:>8.0f}")
    if "models" in kinds:
        print("model presets (kind, layers, hidden, params B):")
        for name, m in sorted(MODELS.items()):
            print(f"  {name:<18}{m.kind:<10}{m.n_layers:>4}{m.hidden:>7}{m.param_count() / 1e9:>9.2f}")
    if "specs" in kinds:
        print("spec presets (use as `hermes simulate NAME` or as a session preset):")
        for name, doc in sorted(spec_presets().items()):
            print(f"  {name:<28}{doc.get('description', '')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list hardware, model and spec presets",
                       description="List the built-in presets that specs can name.")
    p.add_argument("kind", nargs="?", choices=["hardware", "models", "specs"], help="list only this kind")
    p.add_argument("--json", action="store_true", help="print names as JSON")
    p.set_defaults(func=run)
