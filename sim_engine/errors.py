"""Errors the simulator raises for bad input."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec (or an override, or a trace file) is invalid.

    ``field`` is the dotted path of the offending field (``clients[0].tp``),
    ``reason`` says what is wrong with it; ``str()`` gives ``field: reason``.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self):  # picklable across processes (multiprocessing sweeps)
        return (SpecError, (self.field, self.reason))


class NotFoundError(LookupError):
    """A named thing (decision, request, client, snapshot) does not exist."""


class OutOfRangeError(ValueError):
    """A time or index lies outside what the current state allows (e.g. in the past)."""


class AlreadyExistsError(ValueError):
    """An id given by the caller is already taken."""


class PreconditionError(RuntimeError):
    """The simulation is not in a state that allows the call."""


class LimitError(RuntimeError):
    """A configured limit (requests per session, ...) would be exceeded."""


class UnknownReferenceError(SpecError, NotFoundError):
    """A field names something that does not exist (an unknown client id in an answer).

    Both a SpecError (the field is wrong) and a NotFoundError (the thing is missing), so a
    caller that maps errors to status codes can report NOT_FOUND with the field's name.
    """
