"""benchmarks/fleet_load.py and fleet_pacer.py run end to end and print their figure last (no timing
asserted); the load generator's count of a stream's tokens and usage is exact."""

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


@pytest.mark.slow
def test_fleet_pacer_prints_its_figure_last():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fleet_pacer.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.fullmatch(r"fleet_pacer_us_per_token=[\d.]+", out.stdout.strip().splitlines()[-1]), out.stdout


def _response(tokens: int, completion_tokens: int) -> bytes:
    """A chunked SSE completion as the front sends it: `tokens` token chunks, then usage and [DONE]."""
    from server.fleet.responses import SSE_DONE, Shaper

    shaper = Shaper(chat=False, model="m")
    events = [shaper.token_chunk(0)] * tokens + [shaper.usage_chunk(128, completion_tokens), SSE_DONE]
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body


@pytest.mark.parametrize("piece", [1, 5, 7, 64, 1 << 20])
def test_load_generator_counts_every_token_and_checks_the_usage_however_the_bytes_arrive(piece):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fleet_load import _result, _Tally

    def feed(data: bytes) -> _Tally:
        t = _Tally()
        ends = [t.feed(data[i:i + piece], float(i)) for i in range(0, len(data), piece)]
        assert ends[-1] and not any(ends[:-1])  # ended at the last chunk, not before
        return t

    assert _result(feed(_response(40, 40)), 40, 0.0)[0] == 40
    assert _result(feed(_response(39, 40)), 40, 0.0)[0] == -1  # a token short
    assert _result(feed(_response(40, 41)), 40, 0.0)[0] == -1  # usage does not match
    bad = _Tally()
    assert bad.feed(b"HTTP/1.1 429 Too Many Requests\r\n", 0.0) and _result(bad, 40, 0.0)[0] == -1
