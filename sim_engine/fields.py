"""Reading one mapping of a spec field by field: the single validator every spec part uses.

Each reader names the dotted field in its error (``clients[1].scheduler.block_size``)
and checks type and range before the value is used, so nothing downstream sizes an
allocation from an unchecked number. ``done()`` rejects keys nobody read.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import SpecError


def show(value: Any, limit: int = 40) -> str:
    """A value for an error message, cut short (a hostile spec may hold megabytes in one field)."""
    text = repr(value) if not isinstance(value, int) or isinstance(value, bool) or abs(value) < 10**limit \
        else f"an integer of {len(str(abs(value)))} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


class Fields:
    """Reads a mapping field by field, naming each one in errors, and rejects unknown keys."""

    def __init__(self, doc: Any, path: str) -> None:
        if not isinstance(doc, dict):
            raise SpecError(path or "spec", f"must be a mapping, got {type(doc).__name__}")
        self.doc, self.path, self.seen = doc, path, set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.doc.get(key, default)

    def str(self, key: str, default: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
        value = self.raw(key, default)
        if value is None:
            if default is None and key not in self.doc:
                return None
            raise SpecError(self.name(key), "must be a string")
        if not isinstance(value, str):
            raise SpecError(self.name(key), f"must be a string, got {show(value)}")
        if choices is not None and value not in choices:
            raise SpecError(self.name(key), f"unknown value {show(value)}; expected one of {', '.join(choices)}")
        return value

    def int(self, key: str, default: int | None = None, minimum: int | None = 1,
            maximum: int | None = None) -> Any:
        value = self.raw(key)
        if value is None:  # absent or null: the default (trusted, not range-checked)
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not (math.isfinite(value) and value.is_integer())):
            raise SpecError(self.name(key), f"must be an integer, got {show(value)}")
        value = int(value)
        if minimum is not None and value < minimum:
            raise SpecError(self.name(key), f"must be >= {minimum}, got {show(value)}")
        if maximum is not None and value > maximum:
            raise SpecError(self.name(key), f"must be <= {maximum}, got {show(value)}")
        return value

    def float(self, key: str, default: float | None = None, minimum: float | None = 0.0,
              positive: bool = False, maximum: float | None = None) -> Any:
        value = self.raw(key)
        if value is None:  # absent or null: the default
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise SpecError(self.name(key), f"must be a finite number, got {show(value)}")
        value = float(value)
        if positive and value <= 0:
            raise SpecError(self.name(key), f"must be > 0, got {show(value)}")
        if minimum is not None and value < minimum:
            raise SpecError(self.name(key), f"must be >= {minimum}, got {show(value)}")
        if maximum is not None and value > maximum:
            raise SpecError(self.name(key), f"must be <= {maximum}, got {show(value)}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:  # absent or null: the default
            return default
        if not isinstance(value, bool):
            raise SpecError(self.name(key), f"must be true or false, got {show(value)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.seen, key=repr)
        if unknown:
            raise SpecError(self.name(unknown[0]), "unknown field")
