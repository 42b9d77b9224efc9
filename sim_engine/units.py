"""Units and bounds of simulated time, defined once for the engine and the server."""

NS_PER_S = 1_000_000_000
# about 146 simulated years: far from int64 overflow when durations are added to a time
MAX_TIME_NS = 1 << 62
