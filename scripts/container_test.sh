#!/usr/bin/env bash
# Build the real HERMES image with podman, run it and check it, then bring up the compose
# stack (hermes + Prometheus) and check that Prometheus scrapes hermes. CI runs this after
# the test suite (.ci/run). Works on a fresh Debian machine as root with only the Debian,
# PyPI and npm registries reachable (no container registry, no Docker engine):
#   - the Dockerfile's base (python:3.11-slim) is replaced by a local Debian bookworm image
#     made with debootstrap (python3.11 + venv, `python` on PATH), kept between runs;
#   - the Prometheus image is Debian's `prometheus` binary on that base.
# The Dockerfile itself is built unchanged (only --build-arg PYTHON_IMAGE).
#
# Environment (all optional):
#   HERMES_CT_PYTHON_IMAGE  use this base image instead of building one (e.g. python:3.11.11-slim-bookworm
#                           when a registry is reachable)
#   HERMES_CT_MIRROR        Debian mirror for debootstrap (default: the host's apt source, else deb.debian.org)
#   HERMES_CT_STATE         state directory: containers.conf, logs (default /var/tmp/hermes-container-test)
#   HERMES_CT_REBUILD=1     drop the cached base and Prometheus images and build them again
#   HERMES_CT_NO_CACHE=1    build the HERMES image without podman's layer cache (a cold build)
#   HERMES_CT_SKIP_COMPOSE=1  stop after the single-container checks
# Exit status: 0 when every check passed; 1 with "container_test: FAIL: ..." otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

STATE="${HERMES_CT_STATE:-/var/tmp/hermes-container-test}"
MIRROR="${HERMES_CT_MIRROR:-}"
SUITE="bookworm"
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates"
IMAGE="localhost/hermes-sim:0.1.0"
RUN_ID="hermes-ct-$$"
COMPOSE_FILE="$ROOT/deploy/compose/docker-compose.yml"
COMPOSE_PROJECT="hermesct$$"
LOG="$STATE/logs"
T_START=$SECONDS
declare -a TIMINGS=()

say() { echo "container_test: $*"; }
fail() {
    echo "container_test: FAIL: $*" >&2
    exit 1
}
# step NAME CMD...: run CMD, record its wall time under NAME
step() {
    local name="$1" t0=$SECONDS
    shift
    say "== $name"
    "$@"
    TIMINGS+=("$(printf '%-28s %4ds' "$name" $((SECONDS - t0)))")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
hermes_cli() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 -m server.cli "$@"; }
mib() { python3 -c "print(f'{$1 / 2**20:.0f} MiB')"; }

compose() {
    podman-compose -f "$COMPOSE_FILE" -p "$COMPOSE_PROJECT" "$@"
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "${COMPOSE_UP:-}" ]; then
        [ "$rc" -ne 0 ] && compose logs >"$LOG/compose.log" 2>&1 && say "compose logs: $LOG/compose.log"
        compose down -v >/dev/null 2>&1
    fi
    if podman container exists "$RUN_ID" 2>/dev/null; then
        [ "$rc" -ne 0 ] && podman logs "$RUN_ID" >"$LOG/container.log" 2>&1 && say "container logs: $LOG/container.log"
        podman rm -f -t 0 "$RUN_ID" >/dev/null 2>&1
    fi
    [ -n "${ROOTFS_TMP:-}" ] && rm -rf "$ROOTFS_TMP"
    [ -n "${PROM_CTX:-}" ] && rm -rf "$PROM_CTX"
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- setup

setup() {
    [ "$(id -u)" -eq 0 ] || fail "run as root: rootful podman with runc, cgroupfs and debootstrap need it"
    mkdir -p "$STATE" "$LOG"
    bash "$ROOT/scripts/install_test_deps.sh" --container >"$LOG/install.log" 2>&1 \
        || { cat "$LOG/install.log" >&2; fail "installing the container tools (scripts/install_test_deps.sh --container)"; }
    python3 -c 'import grpc, yaml' 2>/dev/null \
        || python3 -m pip install --quiet --disable-pip-version-check -e "$ROOT" >>"$LOG/install.log" 2>&1 \
        || fail "installing HERMES on the host (needed for \`hermes health\` and the SDK session)"
    # No systemd here: cgroupfs, runc, a file event log; ulimits the kernel allows.
    local nofile
    nofile="$(ulimit -Hn)"
    cat >"$STATE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    export CONTAINERS_CONF="$STATE/containers.conf"
    host_network_setup
    podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Store.GraphDriverName}}' \
        >"$LOG/podman-info.txt" 2>&1 || { cat "$LOG/podman-info.txt" >&2; fail "podman info"; }
    say "podman $(podman version --format '{{.Client.Version}}'): $(cat "$LOG/podman-info.txt")"
}

# Reach Debian and PyPI from inside the build the way this host does: its apt mirror and
# proxy for debootstrap; its pip index and CA bundle for pip (a pip.conf mounted read-only at
# /etc/pip.conf during the build; podman passes the *_proxy variables through by itself).
host_network_setup() {
    local proxy index
    if [ -z "$MIRROR" ]; then
        MIRROR="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null)"
        [ -n "$MIRROR" ] || MIRROR="$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
        MIRROR="${MIRROR:-http://deb.debian.org/debian}"
    fi
    proxy="$(apt-config shell P Acquire::http::Proxy 2>/dev/null | sed -n "s/^P='\(.*\)'$/\1/p")"
    if [ -n "$proxy" ] && [ -z "${http_proxy:-}" ]; then
        export http_proxy="$proxy"
    fi
    index="${PIP_INDEX_URL:-$(python3 -m pip config get global.index-url 2>/dev/null || true)}"
    {
        echo "[global]"
        echo "cert = /etc/ssl/certs/ca-certificates.crt"
        case "$index" in http://* | https://*) echo "index-url = $index" ;; esac
    } >"$STATE/pip.conf"
    say "debootstrap mirror $MIRROR; pip in the build: $(tr '\n' ' ' <"$STATE/pip.conf")"
}

# ---------------------------------------------------------------- base image

# The base image's tag names its recipe, so a changed recipe builds a new one.
base_tag() {
    local recipe="$SUITE $BASE_PACKAGES trim-docs-v1"
    echo "localhost/hermes-base:$SUITE-py311-$(echo "$recipe" | sha256sum | cut -c1-10)"
}

build_base() {
    if [ -n "${HERMES_CT_PYTHON_IMAGE:-}" ]; then
        BASE="$HERMES_CT_PYTHON_IMAGE"
        podman image exists "$BASE" || podman pull "$BASE" >"$LOG/base.log" 2>&1 \
            || fail "pulling $BASE (see $LOG/base.log)"
        return
    fi
    BASE="$(base_tag)"
    if [ "${HERMES_CT_REBUILD:-0}" = 1 ]; then
        # the images built on the base go first, or podman keeps the base for them
        podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
        podman images -q --filter reference='localhost/hermes-prometheus' | xargs -r podman rmi -f >/dev/null 2>&1 || true
        podman rmi -f "$BASE" >/dev/null 2>&1 || true
        podman image prune -f >/dev/null 2>&1 || true
        ! podman image exists "$BASE" || fail "HERMES_CT_REBUILD: could not remove $BASE"
    fi
    if podman image exists "$BASE"; then
        say "base image $BASE is cached"
        return
    fi
    ROOTFS_TMP="$(mktemp -d "$STATE/rootfs.XXXXXX")"
    say "debootstrap $SUITE (+ $BASE_PACKAGES) from $MIRROR"
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$ROOTFS_TMP" "$MIRROR" \
        >"$LOG/debootstrap.log" 2>&1 || { tail -n 20 "$LOG/debootstrap.log" >&2; fail "debootstrap"; }
    # what python:3.11-slim does not carry either: package caches, docs, man pages, locales
    rm -rf "$ROOTFS_TMP"/var/cache/apt/archives/*.deb "$ROOTFS_TMP"/var/lib/apt/lists/* \
        "$ROOTFS_TMP"/usr/share/doc/* "$ROOTFS_TMP"/usr/share/man/* "$ROOTFS_TMP"/usr/share/info/* \
        "$ROOTFS_TMP"/usr/share/locale/*
    chroot "$ROOTFS_TMP" python -c 'import venv, ensurepip, ssl' \
        || fail "the debootstrap root has no working python with venv"
    tar -C "$ROOTFS_TMP" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --message "Debian $SUITE minbase + $BASE_PACKAGES (scripts/container_test.sh)" - "$BASE" \
        >"$LOG/import.log" 2>&1 || { cat "$LOG/import.log" >&2; fail "podman import of the base image"; }
    rm -rf "$ROOTFS_TMP"
    ROOTFS_TMP=""
}

# ---------------------------------------------------------------- the HERMES image

build_image() {
    local cache=()
    [ "${HERMES_CT_NO_CACHE:-0}" = 1 ] && cache=(--no-cache)
    # pip inside the build reaches PyPI through this machine's network with its CA bundle
    # and index (read-only bind mounts, not copied into any layer).
    podman build "${cache[@]}" --format docker --network=host \
        --build-arg PYTHON_IMAGE="$BASE" \
        --volume /etc/ssl/certs:/etc/ssl/certs:ro --volume "$STATE/pip.conf:/etc/pip.conf:ro" \
        -t "$IMAGE" -f Dockerfile . >"$LOG/build.log" 2>&1 \
        || { tail -n 40 "$LOG/build.log" >&2; fail "podman build of the Dockerfile (full log: $LOG/build.log)"; }
}

# ---------------------------------------------------------------- one container

wait_healthy_from_host() {
    local deadline=$((SECONDS + 60))
    until hermes_cli health --target "127.0.0.1:$1" --timeout 3 >/dev/null 2>&1; do
        [ "$(podman inspect --format '{{.State.Running}}' "$RUN_ID")" = true ] \
            || { podman logs "$RUN_ID" >&2; fail "the container exited before serving"; }
        [ $SECONDS -lt $deadline ] || { podman logs "$RUN_ID" >&2; fail "hermes health never SERVING on :$1"; }
        sleep 1
    done
}

check_container() {
    local gport mport uid user code health took
    gport="$(free_port)"
    mport="$(free_port)"
    # (podman's complaints that it cannot add systemd healthcheck timers go to the log:
    #  there is no systemd here, the healthcheck is run by hand below)
    podman run -d --name "$RUN_ID" -p "127.0.0.1:$gport:50051" -p "127.0.0.1:$mport:9400" "$IMAGE" \
        >"$LOG/run.log" 2>&1 || { cat "$LOG/run.log" >&2; fail "podman run $IMAGE"; }

    wait_healthy_from_host "$gport"
    say "ok: hermes health from the host: SERVING (127.0.0.1:$gport)"

    uid="$(podman exec "$RUN_ID" stat -c %u /proc/1)" || fail "reading the server's uid"
    user="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
    [ "$uid" = 10001 ] || fail "the server (pid 1) runs as uid $uid, want 10001 (image USER $user)"
    say "ok: the server runs as uid $uid (image USER $user)"

    python3 - "$mport" <<'EOF' || fail "/metrics on the published port"
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10) as r:
    body = r.read().decode()
assert r.status == 200, r.status
assert "hermes_sessions_open" in body, "no hermes_sessions_open in /metrics"
EOF
    say "ok: /metrics answers with the HERMES series"

    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python3 - "$gport" "$mport" <<'EOF' \
        || fail "an SDK session against the container did not finish"
import sys, urllib.request
from client_sdk import Client, RoundRobinScheduler
n = 40
with Client(f"127.0.0.1:{sys.argv[1]}", timeout=120) as client:
    with client.create_session("llama3-8b-h100", seed=1, session_id="container-test",
                               overrides={"router": "external", "workload.num_requests": n}) as s:
        summary = RoundRobinScheduler().run(s)
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[2]}/metrics", timeout=10) as r:
            seen = 'session="container-test"' in r.read().decode()
req = summary["requests"]
assert req["injected"] == n and req["completed"] == n and req["in_flight"] == 0, req
assert summary["sim_time_s"] > 0 and summary["latency_s"]["ttft"]["p50"] > 0, summary
assert seen, "the session's series are not on /metrics"
print(f"container_test: ok: SDK session (external routing) completed {req['completed']}/{n} requests, "
      f"{summary['sim_time_s']:.1f} simulated s, TTFT p50 {summary['latency_s']['ttft']['p50'] * 1e3:.1f} ms")
EOF

    podman healthcheck run "$RUN_ID" >"$LOG/healthcheck.txt" 2>&1 \
        || { cat "$LOG/healthcheck.txt" >&2; fail "podman healthcheck run (the image's HEALTHCHECK)"; }
    health="$(podman inspect --format '{{.State.Health.Status}}' "$RUN_ID" 2>/dev/null || true)"
    say "ok: podman healthcheck run passes (status ${health:-?})"

    took=$SECONDS
    podman stop -t 45 "$RUN_ID" >>"$LOG/run.log" 2>&1 || { cat "$LOG/run.log" >&2; fail "podman stop"; }
    took=$((SECONDS - took))
    code="$(podman inspect --format '{{.State.ExitCode}}' "$RUN_ID")"
    [ "$code" = 0 ] || { podman logs --tail 20 "$RUN_ID" >&2; fail "SIGTERM: exit code $code (want 0) after ${took}s"; }
    say "ok: SIGTERM (podman stop) drains and exits 0 in ${took}s"
    podman rm "$RUN_ID" >>"$LOG/run.log" 2>&1 || fail "podman rm $RUN_ID"
}

# ---------------------------------------------------------------- compose

build_prometheus_image() {
    local version
    version="$(prometheus --version 2>&1 | head -n1 | awk '{print $3}')"
    PROM_IMAGE="localhost/hermes-prometheus:${version%%+*}-debian"
    if podman image exists "$PROM_IMAGE"; then
        say "Prometheus image $PROM_IMAGE is cached"
        return
    fi
    PROM_CTX="$(mktemp -d "$STATE/prom.XXXXXX")"
    cp "$(command -v prometheus)" "$PROM_CTX/prometheus"
    # like prom/prometheus: the binary as entrypoint, user nobody, data in /prometheus
    cat >"$PROM_CTX/Containerfile" <<'EOF'
ARG BASE
FROM ${BASE}
COPY prometheus /bin/prometheus
RUN mkdir -p /etc/prometheus /prometheus && chown 65534:65534 /prometheus
USER 65534:65534
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
    podman build --format docker --network=none --build-arg BASE="$BASE" -t "$PROM_IMAGE" "$PROM_CTX" \
        >"$LOG/prometheus-build.log" 2>&1 || { cat "$LOG/prometheus-build.log" >&2; fail "building $PROM_IMAGE"; }
    rm -rf "$PROM_CTX"
    PROM_CTX=""
}

check_compose() {
    local pport
    export HERMES_GRPC_PORT HERMES_METRICS_PORT PROMETHEUS_PORT PROMETHEUS_IMAGE="$PROM_IMAGE"
    HERMES_GRPC_PORT="$(free_port)"
    HERMES_METRICS_PORT="$(free_port)"
    PROMETHEUS_PORT="$(free_port)"
    pport="$PROMETHEUS_PORT"
    COMPOSE_UP=1
    # grafana is left out: its image is not available without a registry
    compose up -d --no-build hermes prometheus >"$LOG/compose-up.log" 2>&1 \
        || { cat "$LOG/compose-up.log" >&2; fail "podman-compose up hermes prometheus"; }
    local deadline=$((SECONDS + 60))
    until hermes_cli health --target "127.0.0.1:$HERMES_GRPC_PORT" --timeout 3 >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "compose: hermes never SERVING on :$HERMES_GRPC_PORT"
        sleep 1
    done
    local cid
    cid="$(podman ps -q --filter "label=io.podman.compose.project=$COMPOSE_PROJECT" \
        --filter "label=com.docker.compose.service=hermes")"
    [ -n "$cid" ] || fail "compose: no hermes container"
    [ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$cid")" = true ] \
        || fail "compose: hermes' root filesystem is not read-only (read_only: true)"
    podman healthcheck run "$cid" >"$LOG/compose-healthcheck.txt" 2>&1 \
        || { cat "$LOG/compose-healthcheck.txt" >&2; fail "compose: podman healthcheck run on hermes"; }
    say "ok: compose: hermes SERVING (from the host and its HEALTHCHECK), read-only root filesystem"
    python3 - "$pport" <<'EOF' || fail "compose: Prometheus does not scrape hermes (up{job=\"hermes\"} != 1)"
import json, sys, time, urllib.parse, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/api/v1/query?" + urllib.parse.urlencode({"query": 'up{job="hermes"}'})
deadline, last = time.monotonic() + 90, None
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            last = json.load(r)["data"]["result"]
        if last and last[0]["value"][1] == "1":
            print(f"container_test: ok: compose: Prometheus scrapes {last[0]['metric']['instance']}: up == 1")
            sys.exit(0)
    except OSError as e:
        last = repr(e)
    time.sleep(1)
print(f"container_test: last answer from Prometheus: {last}", file=sys.stderr)
sys.exit(1)
EOF
    compose down -v >"$LOG/compose-down.log" 2>&1 || { cat "$LOG/compose-down.log" >&2; fail "podman-compose down"; }
    COMPOSE_UP=""
    [ -z "$(podman ps -a --filter "label=io.podman.compose.project=$COMPOSE_PROJECT" -q)" ] \
        || fail "compose down left containers behind"
    say "ok: compose: stack torn down"
}

# ---------------------------------------------------------------- main

step "install + configure" setup
step "base image" build_base
step "HERMES image build" build_image
step "container checks" check_container
if [ "${HERMES_CT_SKIP_COMPOSE:-0}" != 1 ]; then
    step "Prometheus image" build_prometheus_image
    step "compose checks" check_compose
fi

size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
base_size="$(podman image inspect --format '{{.Size}}' "$BASE")"
say "== summary"
for t in "${TIMINGS[@]}"; do echo "  $t"; done
printf '  %-28s %4ds\n' "total" $((SECONDS - T_START))
say "image $IMAGE: $(mib "$size") (base $BASE: $(mib "$base_size"))"
say "PASS"
