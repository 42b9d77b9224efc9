"""The endpoints file: where each simulated instance listens, for routers and discovery.

A ``.yaml``/``.yml``/``.json`` path gets a document ``{endpoints: [{name, address, port, url,
model, hardware}]}`` (one entry per listener, for file-based endpoint discovery); any other
path gets one URL per line, so ``--worker-urls $(cat FILE)`` works for vllm-router and
sglang-router.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from sim_engine.spec import SimSpec


def endpoint_entries(instances: list, spec: SimSpec, host: str) -> list[dict]:
    hw = {c.id: c.hardware.name for c in spec.clients}
    return [{"name": i.client_id, "address": host, "port": i.port, "url": i.url, "model": i.model,
             "hardware": hw.get(i.client_id, "")} for i in instances]


def write_endpoints(path: str | Path, entries: list[dict]) -> None:
    """Write atomically (a watcher never reads half a file)."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        text = yaml.safe_dump({"endpoints": entries}, sort_keys=False)
    elif path.suffix == ".json":
        text = json.dumps({"endpoints": entries}, indent=2) + "\n"
    else:
        text = "".join(e["url"] + "\n" for e in entries)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
