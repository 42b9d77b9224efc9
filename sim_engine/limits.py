"""Ranges of spec numbers, in one place (the table in docs/SPEC_LIMITS.md lists them).

Why: every number in a spec is checked against a range before anything is sized from it
(a list per KV block slot, a client per replica, an event per closed-loop user), so a
hostile or careless spec gets a SpecError naming the field instead of exhausting memory.
The ranges are generous for real clusters and workloads.
"""

from __future__ import annotations

MAX_CLIENTS = 1024  # clients after replicas are expanded
MAX_PARALLEL = 1024  # tp, pp
MAX_BLOCK_SIZE = 1024  # tokens per KV block (vLLM uses 8..256)
MAX_NUM_SEQS = 65_536
MAX_SCHEDULER_STEPS = 256  # decode steps per scheduling decision (vLLM --num-scheduler-steps; 8-16 in use)
MAX_TOKENS = 10_000_000  # any token count: lengths, budgets, max_model_len, prefixes
MAX_TASK_BATCH = 65_536  # max_batch, concurrency of task clients
MAX_USERS = 100_000  # closed-loop users (one pending event each)
MAX_REQUESTS = 100_000_000  # num_requests, limits.max_requests, prefix groups
MAX_RATE = 1e9  # requests per second
MAX_TIME_SCALE = 1e6
MAX_BANDWIDTH_GBS = 1e6
MAX_LATENCY_US = 1e9  # 1000 s
MAX_WEIGHT = 1e9  # pipeline mix weights
MAX_SIGMA = 10.0  # lognormal sigma (exp(sigma^2) stays finite)
MAX_SEED = (1 << 64) - 1
MAX_OVERRIDES = 1000
MAX_PERF_NUMBER = 1e6  # numeric performance-model options (seconds, factors)
MAX_PRESET_NUMBER = 1e12  # any number of a hardware or model after overrides (GB, GB/s, TFLOPS, W, counts)
MAX_LATENCY_MS = 1e7  # a stage latency draw in milliseconds (about 2.8 hours)
MAX_STAGES = 1024  # executable stages of one pipeline, after includes and loops are expanded
MAX_PIPELINES = 256
MAX_BRANCHES = 1024  # reasoning branches, loop steps
MAX_DOCS = 10_000  # retrieved documents, re-rank candidates
MAX_MULTIPLIER = 1000.0  # thinking_multiplier
MAX_KV_TIERS = 16
MAX_CAPACITY_GB = 1e9
MAX_INDEX_VECTORS = 1 << 40
MAX_INDEX_DIM = 65_536
MAX_INDEX_PARAM = 1 << 30  # centroids, probes, pq_m, k, ef_search, hnsw_m
