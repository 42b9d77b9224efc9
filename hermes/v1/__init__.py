"""hermes.v1: stubs generated from proto/hermes/v1/*.proto by scripts/gen_protos.py. Do not edit."""
