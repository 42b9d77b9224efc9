"""benchmarks/fleet_load.py runs end to end and prints its figure last (smoke: no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fleet_load_smoke_prints_its_figure_last():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fleet_load.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert re.fullmatch(r"fleet_max_requests_per_s=[\d.]+", lines[-1]), lines[-3:]
    assert any(line.startswith("light load") for line in lines)
