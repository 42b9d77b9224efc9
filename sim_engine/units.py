"""Units and limits of simulated time, defined once for the engine and the server.

Simulated time is an integer count of nanoseconds. ``MAX_TIME_NS`` (2^62 ns, about 146
simulated years) is the horizon: anything scheduled past it is refused, which keeps every
sum of a time and a duration far from int64 overflow.
"""

from __future__ import annotations

NS_PER_S = 1_000_000_000
MAX_TIME_NS = 1 << 62
MAX_TIME_S = MAX_TIME_NS / NS_PER_S  # the horizon in seconds (for spec fields given in seconds)
