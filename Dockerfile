# syntax=docker/dockerfile:1
# HERMES co-simulation server image.
#   docker build -t hermes-sim:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9400:9400 hermes-sim:0.1.0
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: generate the gRPC stubs from proto/ and install the package into a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install "grpcio-tools>=1.85.1,<2" \
 && python -m venv /opt/hermes
COPY pyproject.toml README.md* ./
COPY proto/ proto/
COPY scripts/gen_protos.py scripts/gen_protos.py
COPY hermes/ hermes/
COPY sim_engine/ sim_engine/
COPY server/ server/
COPY client_sdk/ client_sdk/
RUN /opt/tools/bin/python scripts/gen_protos.py \
 && /opt/hermes/bin/pip install . \
 && /opt/hermes/bin/hermes --help >/dev/null

# ---- runtime: the venv only, as a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hermes-sim" \
      org.opencontainers.image.description="HERMES gRPC co-simulation server for LLM inference" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/opt/hermes/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 hermes \
 && useradd --system --uid 10001 --gid hermes --home-dir /home/hermes --create-home \
            --shell /usr/sbin/nologin hermes
COPY --from=build /opt/hermes /opt/hermes
WORKDIR /home/hermes
USER 10001:10001
EXPOSE 50051 9400
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["hermes", "health", "--target", "127.0.0.1:50051", "--timeout", "3"]
CMD ["hermes", "serve", "--host", "0.0.0.0", "--port", "50051", "--metrics-port", "9400"]
