"""Per-instance `/metrics`: the exporter's vLLM series for one simulated client, and the fleet's own.

The series come from server.metrics.exporter (one session, ``fleet``), refreshed at scrape
time and filtered to the listener's client, so names, types and buckets are the exporter's
(vLLM's). Added here: ``vllm:cache_config_info`` (block size and number of blocks, the labels
the Gateway API endpoint picker reads) and ``hermes_fleet_lag_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sim_engine import Simulation

from ..metrics.exporter import MetricsExporter
from .pacer import Pacer

SESSION = "fleet"


class FleetMetrics:
    """One exporter for the fleet's simulation; `render(client_id)` answers one listener's scrape."""

    def __init__(self, sim: Simulation, pacer: Pacer):
        self.sim, self.pacer = sim, pacer
        self.exporter = MetricsExporter()
        self.exporter.on_session_created(SESSION, sim)
        self._registries: dict[str, CollectorRegistry] = {}

    def render(self, client_id: str) -> bytes:
        self.exporter.on_session_advanced(SESSION, self.sim)
        reg = self._registries.get(client_id)
        if reg is None:
            reg = self._registries[client_id] = CollectorRegistry(auto_describe=False)
            reg.register(_InstanceCollector(self, client_id))
        return generate_latest(reg)


class _InstanceCollector(Collector):
    def __init__(self, fleet: FleetMetrics, client_id: str):
        self.fleet, self.client_id = fleet, client_id

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        cid = self.fleet.sim.client_by_id[self.client_id]
        for fam in self.fleet.exporter.collect():
            if not (fam.name.startswith("vllm:") or fam.name.startswith("hermes_client_")):
                continue
            samples = [s for s in fam.samples if s.labels.get("client") == self.client_id]
            if samples:
                out = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                out.samples = samples
                yield out
        spec = cid.spec
        state = next((c for c in self.fleet.sim.state().clients if c.id == self.client_id), None)
        info = GaugeMetricFamily("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                                 labels=["block_size", "num_gpu_blocks", "num_cpu_blocks", "gpu_memory_utilization",
                                         "enable_prefix_caching", "engine", "model_name"])
        blocks = state.kv_total_blocks if state is not None else 0
        info.add_metric([str(spec.scheduler.block_size), str(blocks), "0", str(spec.scheduler.gpu_memory_utilization),
                         "False", self.client_id, spec.model.name], 1.0)
        yield info
        lag = GaugeMetricFamily("hermes_fleet_lag_seconds",
                                "Worst delay (wall seconds) of the simulation behind its scaled clock over the "
                                "last one to two seconds.")
        lag.add_metric([], self.fleet.pacer.lag_gauge())
        yield lag
        scale = GaugeMetricFamily("hermes_fleet_time_scale", "Simulated seconds per wall-clock second.")
        scale.add_metric([], self.fleet.pacer.scale)
        yield scale
        clock = GaugeMetricFamily("hermes_simulated_time_seconds", "The fleet's simulated clock (seconds).")
        clock.add_metric([], self.fleet.sim.now_ns / 1e9)
        yield clock
