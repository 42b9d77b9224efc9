"""Plots of a sweep's main figures against each swept field (matplotlib, imported on demand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAIN_FIGURES = ("ttft_p90", "tpot_p90", "e2e_p90", "output_tokens_per_s")


def _value(cell: str) -> Any:
    try:
        return json.loads(cell)
    except ValueError:
        return cell


def plot_sweep(rows: list[dict[str, str]], fields: list[str], out_dir: str | Path,
               figures: tuple[str, ...] = MAIN_FIGURES) -> list[Path]:
    """One PNG per figure: a panel per swept field, every run as a dot, the mean per value as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    panels = fields or ["seed"]
    for fig_name in figures:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
        for ax, fld in zip(axes[0], panels, strict=True):
            xs = [_value(r[fld]) for r in rows]
            ys = [float(r[fig_name]) for r in rows]
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
            levels = sorted(set(xs)) if numeric else sorted(set(map(str, xs)))
            pos = {v: (v if numeric else i) for i, v in enumerate(levels)}
            keys = xs if numeric else [str(x) for x in xs]
            ax.scatter([pos[k] for k in keys], ys, s=12, alpha=0.4)
            means = [sum(y for k, y in zip(keys, ys, strict=True) if k == v)
                     / max(sum(1 for k in keys if k == v), 1) for v in levels]
            ax.plot([pos[v] for v in levels], means, marker="o")
            if not numeric:
                ax.set_xticks(range(len(levels)), levels, rotation=20)
            ax.set_xlabel(fld)
            ax.set_ylabel(fig_name)
        fig.tight_layout()
        path = out / f"{fig_name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
