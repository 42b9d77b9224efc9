"""Per-request latencies from the request records: the one definition of TTFT, TPOT and E2E.

The summary, the CSV writer, the plots and the Prometheus exporter all read latencies
from here, so a change of definition (e.g. what TPOT divides by) happens in one place.
"""

from __future__ import annotations

import numpy as np

from .request import STATUS_COMPLETED
from .units import NS_PER_S

COLUMNS = ("idx", "client", "arrival_ns", "scheduled_ns", "first_token_ns", "finish_ns", "prompt_tokens",
           "output_tokens")


def request_latencies(records: dict[str, np.ndarray], start: int = 0) -> dict[str, np.ndarray]:
    """Latencies (simulated seconds) of the requests completed in records[start:], in record order.

    TPOT is decode time over the tokens after the first (0 for one-token outputs); `gaps` is the
    number of inter-token gaps; `ended` holds the idx of every request ended in records[start:].
    """
    done = np.asarray(records["status"][start:]) == STATUS_COMPLETED
    col = {k: np.asarray(records[k][start:])[done] for k in COLUMNS}
    out_tok = col["output_tokens"]
    decode = (col["finish_ns"] - col["first_token_ns"]) / NS_PER_S
    return {
        "ended": np.array(records["idx"][start:]),
        "idx": col["idx"],
        "client": col["client"],
        "ttft": (col["first_token_ns"] - col["arrival_ns"]) / NS_PER_S,
        "e2e": (col["finish_ns"] - col["arrival_ns"]) / NS_PER_S,
        "queue": (col["scheduled_ns"] - col["arrival_ns"]) / NS_PER_S,
        "prefill": (col["first_token_ns"] - col["scheduled_ns"]) / NS_PER_S,
        "decode": decode,
        "inference": (col["finish_ns"] - col["scheduled_ns"]) / NS_PER_S,
        "tpot": np.where(out_tok > 1, decode / np.maximum(out_tok - 1, 1), 0.0),
        "gaps": np.maximum(out_tok - 1, 0),
        "prompt_tokens": col["prompt_tokens"],
        "output_tokens": out_tok,
    }
