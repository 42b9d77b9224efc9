"""Smoke tests of the case-study scripts: each runs its tiny ``--smoke`` sweep in a few seconds
and must write its CSV, its PNG and a findings summary that compares with the paper."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["reasoning", "rag", "batching", "kv_retrieval"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_case_study_smoke(name: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "case_studies" / f"{name}.py"), "--smoke", "--procs", "2",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = tmp_path / f"{name}.csv"
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert rows, "empty CSV"
    png = tmp_path / f"{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "paper:" in proc.stdout  # the finding is compared with the paper's
    assert (tmp_path / "findings.txt").read_text().strip()
