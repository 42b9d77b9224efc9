"""Every family the exporter serves: name, type, help and labels (docs/METRICS.md lists them).

Labels are declared with `session` in its place; with `aggregate_sessions` the exporter drops
that label and sums the sessions' series (MERGE says how each family combines).
"""

from __future__ import annotations

from .hist import REQUEST_LATENCY_BUCKETS, TOKEN_COUNT_BUCKETS, TOKEN_GAP_BUCKETS, TTFT_BUCKETS

SESSION = "session"
OTHER = "_other"  # the label value of clients and links past the per-session cap
FINISHED_REASON = "stop"  # the only way HERMES finishes a request (vLLM also has length, abort)
VLLM_LABELS = ["model_name", "engine", "client", SESSION]
_S, _C = [SESSION], [SESSION, "client"]

# per-request histograms: name -> (help, buckets)
REQUEST_HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "vllm:time_to_first_token_seconds": ("Histogram of time to first token in seconds.", TTFT_BUCKETS),
    "vllm:inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.", TOKEN_GAP_BUCKETS),
    "vllm:request_time_per_output_token_seconds": (
        "Histogram of time_per_output_token_seconds per request.",
        TOKEN_GAP_BUCKETS,
    ),
    "vllm:e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS),
    "vllm:request_queue_time_seconds": (
        "Histogram of time spent in WAITING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_inference_time_seconds": (
        "Histogram of time spent in RUNNING phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_prefill_time_seconds": (
        "Histogram of time spent in PREFILL phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_decode_time_seconds": (
        "Histogram of time spent in DECODE phase for request.",
        REQUEST_LATENCY_BUCKETS,
    ),
    "vllm:request_prompt_tokens": ("Number of prefill tokens processed.", TOKEN_COUNT_BUCKETS),
    "vllm:request_generation_tokens": ("Number of generation tokens processed.", TOKEN_COUNT_BUCKETS),
}
# vLLM's deprecated aliases (hidden by vLLM itself unless asked for): off unless
# MetricsExporter(deprecated_vllm_series=True); each repeats another family's values
DEPRECATED_ALIASES = {
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
}

# family name -> (type, help, label names); counters are exposed with a `_total` suffix
FAMILIES: dict[str, tuple[str, str, list[str]]] = {
    "vllm:num_requests_running": ("gauge", "Number of requests in model execution batches.", VLLM_LABELS),
    "vllm:num_requests_waiting": ("gauge", "Number of requests waiting to be processed.", VLLM_LABELS),
    "vllm:kv_cache_usage_perc": ("gauge", "KV-cache usage. 1 means 100 percent usage.", VLLM_LABELS),
    "vllm:gpu_cache_usage_perc": (
        "gauge",
        "GPU KV-cache usage. 1 means 100 percent usage. DEPRECATED: Use vllm:kv_cache_usage_perc.",
        VLLM_LABELS,
    ),
    "vllm:num_preemptions": ("counter", "Cumulative number of preemption from the engine.", VLLM_LABELS),
    "vllm:prompt_tokens": ("counter", "Number of prefill tokens processed.", VLLM_LABELS),
    "vllm:generation_tokens": ("counter", "Number of generation tokens processed.", VLLM_LABELS),
    "vllm:request_success": (
        "counter",
        "Count of successfully processed requests.",
        VLLM_LABELS + ["finished_reason"],
    ),
    **{name: ("histogram", doc, VLLM_LABELS) for name, (doc, _) in REQUEST_HISTOGRAMS.items()},
    "vllm:time_per_output_token_seconds": (
        "histogram",
        "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds.",
        VLLM_LABELS,
    ),
    "hermes_simulated_time_seconds": ("gauge", "The session's simulated clock (simulated seconds).", _S),
    "hermes_sim_seconds_per_wall_second": (
        "gauge",
        "Simulated seconds per wall-clock second over the session's last Advance.",
        _S,
    ),
    "hermes_advance_wall_seconds": ("counter", "Wall-clock seconds the session spent in Advance.", _S),
    "hermes_events_processed": ("counter", "Simulator (kernel) events processed by the session.", _S),
    "hermes_requests_injected": ("counter", "Requests that entered the session (workload or Inject).", _S),
    "hermes_requests_completed": ("counter", "Requests the session completed.", _S),
    "hermes_requests_dropped": ("counter", "Requests the session dropped.", _S),
    "hermes_requests_aborted": ("counter", "Requests their caller aborted before they ended.", _S),
    "hermes_requests_in_flight": ("gauge", "Requests in the session that have not ended.", _S),
    "hermes_pending_decisions": ("gauge", "Routing and batch decisions waiting for the co-simulation client.", _S),
    "hermes_stage_latency_seconds": (
        "histogram",
        "Per-stage latency of completed requests (simulated seconds).",
        _S + ["stage"],
    ),
    "hermes_client_info": (
        "gauge",
        "Simulated client metadata (value 1).",
        _C + ["model_name", "hardware", "role"],
    ),
    "hermes_client_up": ("gauge", "Simulated clients that serve (1 each; 0 once failed or removed).", _C),
    "hermes_client_kv_used_blocks": ("gauge", "KV-cache blocks in use on the client.", _C),
    "hermes_client_kv_total_blocks": ("gauge", "KV-cache blocks the client has.", _C),
    "hermes_client_busy_seconds": ("counter", "Simulated seconds the client was busy.", _C),
    "hermes_client_energy_joules": ("counter", "Energy the client used while busy (simulated joules).", _C),
    "hermes_client_requests_completed": ("counter", "Requests completed on the client.", _C),
    "hermes_link_utilization_ratio": ("gauge", "Fraction of the link's bandwidth in use (0-1).", _S + ["link"]),
    "hermes_link_bytes": ("counter", "Bytes moved over the link (simulated).", _S + ["link"]),
    "hermes_sessions_open": ("gauge", "Sessions open on this server.", []),
    "hermes_sessions_reaped": ("counter", "Sessions the server closed on its own, by reason.", ["reason"]),
    "hermes_metrics_auth_failures": ("counter", "Scrapes of /metrics refused for a missing or wrong token.", []),
    "hermes_rpc_duration_seconds": ("histogram", "Wall-clock latency of gRPC calls.", ["method", "code"]),
}

# how a family combines the series of several clients (past the cap) or sessions (aggregated):
# "sum" unless listed; "max" for info series; "mean" weighted (KV usage by KV blocks, links equally)
MERGE = {
    "hermes_client_info": "max",
    "vllm:kv_cache_usage_perc": "mean",
    "vllm:gpu_cache_usage_perc": "mean",
    "hermes_link_utilization_ratio": "mean",
}
# a session's own clock: meaningless summed over sessions, so not served when aggregating
SESSION_ONLY = frozenset({"hermes_simulated_time_seconds", "hermes_sim_seconds_per_wall_second"})

# family name -> field of the engine's ClientState
VLLM_STATE_FIELDS = {
    "vllm:num_requests_running": "num_running",
    "vllm:num_requests_waiting": "num_waiting",
    "vllm:num_preemptions": "preemptions_total",
    "vllm:prompt_tokens": "prompt_tokens_total",
    "vllm:generation_tokens": "generation_tokens_total",
}
HERMES_STATE_FIELDS = {
    "hermes_client_kv_used_blocks": "kv_used_blocks",
    "hermes_client_kv_total_blocks": "kv_total_blocks",
    "hermes_client_busy_seconds": "busy_s",
    "hermes_client_energy_joules": "energy_j",
    "hermes_client_requests_completed": "requests_completed_total",
}
GONE_ZERO_FIELDS = frozenset({"num_running", "num_waiting", "kv_usage", "kv_used_blocks"})
SESSION_STATE_FIELDS = {
    "hermes_requests_injected": "injected",
    "hermes_requests_completed": "completed",
    "hermes_requests_dropped": "dropped",
    "hermes_requests_aborted": "aborted",
    "hermes_requests_in_flight": "in_flight",
    "hermes_pending_decisions": "pending_decisions",
}
