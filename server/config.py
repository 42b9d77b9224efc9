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
    max_message_mb: int = 64
    max_events_per_reply: int = 200_000
    max_snapshots_per_session: int = 16
    workers: int = 128  # gRPC handler threads = concurrent calls + open Session streams
    token: str | None = None
    drain_grace_s: float = 30.0
    # "stop": refuse every call at once and interrupt in-flight Advances; "handoff": keep
    # serving open sessions for the grace period (no new ones), then refuse with UNAVAILABLE
    drain_mode: str = "stop"
    # scale-out: server-chosen session ids are "<shard_id>.<local>" ("" -> plain ids)
    shard_id: str = ""
    log_level: str = "info"

    @property
    def max_message_bytes(self) -> int:
        return self.max_message_mb * 1024 * 1024
