"""The Prometheus exporter of `hermes serve --metrics-port` (vLLM-named series per simulated client)."""
