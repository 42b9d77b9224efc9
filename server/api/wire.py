"""Conversions between engine objects and hermes.v1 messages (no validation, no state).

Hot path: `fill_events` runs once per delivered event, so it builds each
message in place with `add()` and touches only the fields an event has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import struct_pb2

from hermes.v1 import common_pb2

from ..errors import invalid

EVENT_KINDS: dict[str, int] = {
    "arrival": common_pb2.EVENT_KIND_ARRIVAL,
    "routed": common_pb2.EVENT_KIND_ROUTED,
    "first_token": common_pb2.EVENT_KIND_FIRST_TOKEN,
    "completed": common_pb2.EVENT_KIND_COMPLETED,
    "dropped": common_pb2.EVENT_KIND_DROPPED,
    "preempted": common_pb2.EVENT_KIND_PREEMPTED,
    "decision": common_pb2.EVENT_KIND_DECISION,
    "wakeup": common_pb2.EVENT_KIND_WAKEUP,
    "cluster": common_pb2.EVENT_KIND_CLUSTER,
    "aborted": common_pb2.EVENT_KIND_ABORTED,
}
KIND_NAMES: dict[int, str] = {v: k for k, v in EVENT_KINDS.items()}

_RESULT_KEYS = frozenset(common_pb2.RequestResult.DESCRIPTOR.fields_by_name)
# event data keys that have a typed home in Event (the rest go to `attributes`)
_TYPED_KEYS = {"reason": "reason", "action": "reason", "tag": "tag", "decision_id": "decision_id",
               "stage": "stage"}

DECISION_ACTIONS = {
    common_pb2.DECISION_ACTION_ROUTE: "route",
    common_pb2.DECISION_ACTION_DEFER: "defer",
    common_pb2.DECISION_ACTION_DROP: "drop",
}
STOP_REASONS = {  # engine StopReason names (and the server's INTERRUPTED) -> proto enum
    "TARGET_REACHED": common_pb2.STOP_REASON_TARGET_REACHED,
    "DECISION_NEEDED": common_pb2.STOP_REASON_DECISION_NEEDED,
    "WAKEUP": common_pb2.STOP_REASON_WAKEUP,
    "IDLE": common_pb2.STOP_REASON_IDLE,
    "EVENT_BOUND": common_pb2.STOP_REASON_EVENT_BOUND,
    "INTERRUPTED": common_pb2.STOP_REASON_INTERRUPTED,
}
CLUSTER_ACTIONS = {
    common_pb2.CLUSTER_ACTION_ADD: "add",
    common_pb2.CLUSTER_ACTION_DRAIN: "drain",
    common_pb2.CLUSTER_ACTION_REMOVE: "remove",
    common_pb2.CLUSTER_ACTION_FAIL: "fail",
}


def fill_events(out: Any, events: Iterable[Any], kinds: frozenset[str] | None = None) -> int:
    """Append engine events to the repeated field `out`; returns how many were added."""
    n = 0
    add = out.add
    for ev in events:
        kind = ev.kind
        if kinds is not None and kind not in kinds:
            continue
        msg = add(time_ns=ev.time_ns, kind=EVENT_KINDS.get(kind, 0),
                  request_id=ev.request_id or "", client_id=ev.client_id or "")
        data = ev.data
        if data:
            res = None
            for key, value in data.items():
                if value is None:
                    continue
                if key in _RESULT_KEYS:
                    if res is None:
                        res = msg.result
                    setattr(res, key, value)
                elif key in _TYPED_KEYS:
                    setattr(msg, _TYPED_KEYS[key], str(value))
                else:
                    msg.attributes[key] = str(value)
        if kind not in EVENT_KINDS:
            msg.attributes["kind"] = str(kind)
        n += 1
    return n


_BATCH_SCALARS = ("client_id", "time_ns", "token_budget", "max_seqs", "block_size", "free_blocks", "total_blocks")
_BATCH_REQUEST_FIELDS = tuple(common_pb2.BatchRequestView.DESCRIPTOR.fields_by_name)


def fill_batch_decision(msg: Any, d: Any) -> Any:
    """A BatchDecision message from the engine's view (the field names are the same)."""
    msg.decision_id = str(d.decision_id)
    for name in _BATCH_SCALARS:
        setattr(msg, name, getattr(d, name))
    for group in ("waiting", "running"):
        add = getattr(msg, group).add
        for r in getattr(d, group):
            fields = {name: getattr(r, name) for name in _BATCH_REQUEST_FIELDS}
            fields["prefix_key"] = fields["prefix_key"] or ""
            add(**fields)
    return msg


def fill_decision(msg: Any, d: Any) -> Any:
    msg.decision_id = str(d.decision_id)
    msg.request_id = str(d.request_id)
    msg.stage_index = int(d.stage_index)
    msg.stage_kind = str(d.stage_kind)
    msg.model = str(d.model)
    msg.candidates.extend(str(c) for c in d.candidates)
    msg.time_ns = int(d.time_ns)
    msg.prompt_tokens = int(getattr(d, "prompt_tokens", 0) or 0)
    msg.output_tokens = int(getattr(d, "output_tokens", 0) or 0)
    msg.prefix_key = str(getattr(d, "prefix_key", "") or "")
    return msg


_CLIENT_FIELDS = tuple(common_pb2.ClientState.DESCRIPTOR.fields_by_name)
_TEXT_FIELDS = {"id", "hardware", "model", "role", "status"}
_LINK_FIELDS = tuple(f for f in common_pb2.LinkState.DESCRIPTOR.fields_by_name if f != "id")


_CLUSTER_COUNTS = ("pending_decisions", "in_flight", "injected", "completed", "dropped", "aborted")


def fill_state(msg: Any, state: Any, now_ns: int) -> Any:
    msg.now_ns = now_ns
    for key in _CLUSTER_COUNTS:
        setattr(msg, key, int(getattr(state, key, 0) or 0))
    for link_id, stats in sorted((getattr(state, "links", None) or {}).items()):
        lm = msg.links.add(id=str(link_id))
        for key in _LINK_FIELDS:
            value = stats.get(key)
            if value is not None:
                setattr(lm, key, type(getattr(lm, key))(value))
    for c in state.clients:
        cm = msg.clients.add()
        for key in _CLIENT_FIELDS:
            value = getattr(c, key, None)
            if value is None:
                continue
            if key in _TEXT_FIELDS:
                setattr(cm, key, str(value))
            elif isinstance(getattr(cm, key), float):
                setattr(cm, key, float(value))
            else:
                setattr(cm, key, int(value))
    return msg


# ---------------------------------------------------------------- Struct <-> plain data


def _number(x: float, path: str) -> int | float:
    """Struct numbers are doubles: integral ones come back as ints (spec lists of ints reject 2.0)."""
    if not math.isfinite(x):
        raise invalid(path, f"must be a finite number, got {x}")
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def value_to_plain(v: struct_pb2.Value, path: str) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        return _number(v.number_value, path)
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_plain(v.struct_value, path)
    if kind == "list_value":
        return [value_to_plain(x, f"{path}[{i}]") for i, x in enumerate(v.list_value.values)]
    return None


def struct_to_plain(msg: struct_pb2.Struct, path: str) -> dict:
    """Plain data from a Struct; `path` names the field in errors (no NaN/Inf in specs)."""
    return {k: value_to_plain(v, f"{path}.{k}") for k, v in msg.fields.items()}


def json_default(value: Any) -> Any:
    """json.dumps fallback for numpy scalars/arrays the engine may put in a summary."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, default=json_default, allow_nan=True)


def json_to_struct(text: str, out: struct_pb2.Struct) -> None:
    """Fill a Struct from JSON text (NaN/Inf, which Struct cannot carry, become null)."""
    out.update(_finite(json.loads(text)))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    return value
