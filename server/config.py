"""Server settings in one place (the CLI fills them; tests and the demo build them directly)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int | None = None
    max_sessions: int = 64
    max_requests_per_session: int = 1_000_000
    # requests in one Inject call: converting a repeated field holds the GIL, so one call stays short
    max_requests_per_call: int = 100_000
    max_message_mb: int = 64  # replies (an Advance may carry many events)
    # requests: decoding a message holds the GIL (~0.15 s per 10 MiB of small messages), and no
    # legitimate call needs more (specs are <= max_spec_kb, Inject <= max_requests_per_call)
    max_request_mb: int = 16
    max_events_per_reply: int = 200_000
    max_snapshots_per_session: int = 16
    # YAML text or Struct document of one spec (real specs are a few KiB); parsing stays well
    # under a second at this size
    max_spec_kb: int = 256
    # a session whose spec the engine estimates to need more memory is refused (0: no cap);
    # requests injected later are bounded by max_requests_per_session instead
    session_memory_mb: int = 2048
    # a session without a call for this long is closed (0: never)
    session_idle_timeout_s: float = 900.0
    # wall budget of one call: a longer Advance returns INTERRUPTED at a consistent point (0: none)
    max_call_seconds: float = 60.0
    workers: int = 128  # gRPC handler threads = concurrent calls + open Session streams
    token: str | None = None
    # bearer token of /metrics; the CLI defaults it to `token`
    metrics_token: str | None = None
    metrics_aggregate: bool = False  # /metrics without the session label
    tls_cert: str | None = None  # PEM file paths, named by the operator (never by a client)
    tls_key: str | None = None
    # the only directory from which a spec may name data files (traces); None: bundled data only
    data_dir: str | None = None
    drain_grace_s: float = 30.0
    # "stop": refuse every call at once and interrupt in-flight Advances; "handoff": keep
    # serving open sessions for the grace period (no new ones), then refuse with UNAVAILABLE
    drain_mode: str = "stop"
    # scale-out: server-chosen session ids are "<shard_id>.<local>" ("" -> plain ids)
    shard_id: str = ""
    log_level: str = "info"
    # test-only: a directory of gate files that hold an Advance (see server/api/testgate.py)
    test_gate_dir: str | None = None

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024

    @property
    def max_request_bytes(self) -> int:
        return self.max_request_mb * 1024 * 1024

    @property
    def max_spec_bytes(self) -> int:
        return self.max_spec_kb * 1024

    @property
    def session_memory_bytes(self) -> int:
        return self.session_memory_mb * 1024 * 1024

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)
