"""HTTP front that lets real routers and OpenAI clients drive simulated instances (docs/FLEET.md).

The engine knows nothing of HTTP or clocks: this package paces a Simulation against the
wall clock (pacer), parses and bounds requests (requests), shapes OpenAI bodies (responses),
serves them per simulated client (app) and exports each instance's vLLM metrics (metrics).
"""
