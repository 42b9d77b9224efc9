"""Data files a spec may name (request traces, measured step times), opened only where allowed.

Why: a spec can come from a stranger over the network, and a path in it must not become a
way to read the server's files. So:

* bundled traces are named by short name (``azure_conv``) and always allowed;
* any other path is allowed only when the caller names a data directory, and must resolve
  inside it (no ``..``, no absolute path elsewhere, no symlink that leads out);
* an error never shows a file's contents (only line numbers and column names we expect),
  and a path outside the directory gets the same answer whether or not it exists.

``check_trace`` reads a request trace once at validation time with the same rules the
workload uses to replay it, so ``load_spec`` rejects a bad trace before anything runs.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError
from .fields import show
from .limits import MAX_TOKENS
from .units import MAX_TIME_S

DATA_DIR = Path(__file__).parent / "data"
BUNDLED_TRACES = {
    "azure_conv": "azure_llm_2023_conv.csv",
    "azure_code": "azure_llm_2023_code.csv",
    "arxiv_summarization": "arxiv_summarization_lengths.csv",
}
MAX_TRACE_BYTES = 64 << 20  # a trace larger than this is refused (the bundled ones are < 1 MB)
MAX_TRACE_TOKENS = MAX_TOKENS  # token counts per request in a trace
TRACE_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")


def _outside(field: str, name: str) -> SpecError:
    return SpecError(field, f"{show(name)} is not a bundled trace ({', '.join(BUNDLED_TRACES)}) and not a file "
                     "inside the data directory")


def resolve_data_path(name: str, data_dir: str | Path | None, field: str) -> Path:
    """The file a spec names: a bundled trace short name, or a path inside ``data_dir``.

    Without a data directory only bundled names are allowed. Relative paths are taken
    from the data directory; after resolving symlinks the file must lie inside it.
    """
    if not isinstance(name, str) or not name:
        raise SpecError(field, "must be a bundled trace name or a file name")
    if name in BUNDLED_TRACES:
        return DATA_DIR / "traces" / BUNDLED_TRACES[name]
    if data_dir is None:
        raise SpecError(field, f"{show(name)} is not a bundled trace ({', '.join(BUNDLED_TRACES)}); files are read "
                        "only from a data directory the operator names (hermes serve --data-dir, or the spec "
                        "file's folder for hermes simulate)")
    if "\x00" in name or len(name) > 4096:
        raise _outside(field, name[:64])
    root = Path(data_dir).resolve()
    path = Path(name)
    if ".." in path.parts:
        raise _outside(field, name)
    try:
        resolved = (path if path.is_absolute() else root / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise _outside(field, name) from None
    if not resolved.is_relative_to(root):
        raise _outside(field, name)
    if not resolved.is_file():
        raise SpecError(field, f"no such file in the data directory: {show(name)}")
    return resolved


@dataclass(frozen=True)
class TraceInfo:
    """What validation learns from a trace: its size and time span (nothing of its contents)."""

    rows: int
    has_arrivals: bool
    last_arrival_s: float
    nbytes: int


_CACHE: dict[tuple[str, int, int], TraceInfo] = {}


def check_trace(path: Path, field: str) -> TraceInfo:
    """Read a trace CSV as the workload will, raising SpecError (line numbers only) on any problem."""
    try:
        st = os.stat(path)
    except OSError:
        raise SpecError(field, "cannot read the trace file") from None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    if st.st_size > MAX_TRACE_BYTES:
        raise SpecError(field, f"trace file is {st.st_size} bytes; the limit is {MAX_TRACE_BYTES}")
    rows = 0
    last = 0.0
    try:
        with open(path, newline="", encoding="utf-8", errors="strict") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise SpecError(field, "trace file is empty")
            header = [h.strip() for h in header]
            for col in TRACE_COLUMNS:
                if col not in header:
                    raise SpecError(field, f"trace has no column {col!r} (needs {', '.join(TRACE_COLUMNS)}, "
                                    "optionally arrived_at)")
            i_p, i_d = header.index(TRACE_COLUMNS[0]), header.index(TRACE_COLUMNS[1])
            i_t = header.index("arrived_at") if "arrived_at" in header else None
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    p, d = int(float(row[i_p])), int(float(row[i_d]))
                    t = float(row[i_t]) if i_t is not None else 0.0
                except (ValueError, IndexError, OverflowError):
                    raise SpecError(field, f"trace line {lineno}: not a number in an expected column") from None
                if not (1 <= p <= MAX_TRACE_TOKENS and 1 <= d <= MAX_TRACE_TOKENS):
                    raise SpecError(field, f"trace line {lineno}: token counts must be in [1, {MAX_TRACE_TOKENS}]")
                if i_t is not None:
                    if not math.isfinite(t) or t < 0 or t > MAX_TIME_S:
                        raise SpecError(field, f"trace line {lineno}: arrival must be a time in [0, {MAX_TIME_S:g}] s")
                    if t < last:
                        raise SpecError(field, f"trace line {lineno}: arrivals must not go back in time")
                    last = t
                rows += 1
    except (UnicodeDecodeError, csv.Error):
        raise SpecError(field, "trace file is not a UTF-8 CSV") from None
    except OSError:
        raise SpecError(field, "cannot read the trace file") from None
    if not rows:
        raise SpecError(field, "trace has no requests")
    info = TraceInfo(rows, i_t is not None, last, st.st_size)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = info
    return info
