"""Checks on request fields that the engine cannot phrase in wire terms.

Each check raises `ApiError` with the proto field path, so a client sees
`requests[2].prompt_tokens: must be > 0` rather than an engine-internal name.
They run before any session is touched: a failed call changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from sim_engine.units import MAX_TIME_NS

from ..errors import invalid, out_of_range

ID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
REQUEST_ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
MAX_NAME = 128
# the latest simulated time a call may name (~146 years): leaves int64 headroom for the durations
# the engine adds to it (a request arriving at 2**63 - 1 would overflow its records)
HORIZON_NS = MAX_TIME_NS  # the engine's horizon (sim_engine.units)
MAX_TOKENS = 2**31 - 1  # per request and kind; far beyond any model's context


def session_id(value: str, field: str = "session_id") -> str:
    if not value:
        raise invalid(field, "missing")
    if not ID_RE.match(value):
        raise invalid(field, "must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return value


def optional_id(value: str, field: str) -> str | None:
    """An id the caller may leave empty (the server then picks one)."""
    return session_id(value, field) if value else None


def required_text(value: str, field: str) -> str:
    if not value:
        raise invalid(field, "missing")
    return short_text(value, field)


def short_text(value: str, field: str) -> str:
    if len(value) > MAX_NAME:
        raise invalid(field, f"longer than {MAX_NAME} characters")
    if not value.isprintable():
        raise invalid(field, "contains non-printable characters")
    return value


def request_id(value: str, field: str) -> str | None:
    if not value:
        return None
    if not REQUEST_ID_RE.match(value):
        raise invalid(field, "must be 1-128 printable ASCII characters without spaces")
    return value


def non_negative(value: int, field: str) -> int:
    if value < 0:
        raise invalid(field, f"must be >= 0, got {value}")
    return value


def sim_time(value: int, now: int, field: str) -> int:
    """A point in simulated time: not negative, not before `now`, not past the horizon."""
    non_negative(value, field)
    if value < now:
        raise out_of_range(field, f"{value} is before the session's time {now}")
    if value > HORIZON_NS:
        raise out_of_range(field, f"{value} is past the simulation horizon of {HORIZON_NS} ns")
    return value


def token_count(value: int, field: str) -> int:
    positive(value, field)
    if value > MAX_TOKENS:
        raise invalid(field, f"must be <= {MAX_TOKENS}, got {value}")
    return value


def positive(value: int, field: str) -> int:
    if value <= 0:
        raise invalid(field, f"must be > 0, got {value}")
    return value


def enum_value(enum: EnumTypeWrapper, value: int, field: str, allow_unspecified: bool = False) -> int:
    """Proto3 enums are open: reject numbers the schema does not name, and the zero value."""
    if value not in enum.values() or (value == 0 and not allow_unspecified):
        names = ", ".join(n for n, v in enum.items() if v != 0)
        raise invalid(field, f"unknown value {value}; expected one of {names}")
    return value


def unique(values: Iterable[str], field: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise invalid(f"{field}[{i}]", f"duplicate {v!r}")
        seen.add(v)
