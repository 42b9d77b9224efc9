"""The Prometheus exporter of `hermes serve --metrics-port` (vLLM-named series per simulated client).

hist: bucket sets and histograms; families: every family served; tables: what is kept per
session and how records fold in; series: a session's series and the volume caps; http: the
endpoint and its token; exporter: the observer and collector tying them together.
"""
