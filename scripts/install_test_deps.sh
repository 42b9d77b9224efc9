#!/usr/bin/env bash
# Install what the metrics, deploy and Node.js tests need beyond pip:
#   - Debian's `prometheus` package (the real server and promtool),
#   - examples/node/node_modules via `npm ci` (needs node/npm on PATH).
# With --container, also what scripts/container_test.sh needs: Debian's podman, runc,
# debootstrap (+ netavark, aardvark-dns for compose networks) and podman-compose from PyPI.
# Idempotent and quick when everything is already there. Run as root (or with sudo) on Debian.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONTAINER=0
for arg in "$@"; do
    case "$arg" in
        --container) CONTAINER=1 ;;
        *) echo "install_test_deps: unknown option $arg (known: --container)" >&2; exit 2 ;;
    esac
done
PODMAN_COMPOSE_VERSION="1.6.0"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# Keep daemons from being started by package scripts inside containers / CI.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "install_test_deps: installing Debian package prometheus"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
        # the package's service must not run: the tests start their own server
        as_root sh -c 'command -v systemctl >/dev/null && systemctl disable --now prometheus 2>/dev/null || true'
    else
        echo "install_test_deps: apt-get not found; install Prometheus (prometheus, promtool) by hand" >&2
    fi
else
    echo "install_test_deps: prometheus already installed ($(prometheus --version 2>&1 | head -n1))"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if command -v apt-get >/dev/null; then
        echo "install_test_deps: installing Debian packages nodejs npm"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
fi

NODE_DIR="$ROOT/examples/node"
if [ -f "$NODE_DIR/package-lock.json" ]; then
    if ! command -v npm >/dev/null; then
        echo "install_test_deps: npm not found; install Node.js 18+ to run the Node.js example" >&2
    elif [ -d "$NODE_DIR/node_modules" ] && [ "$NODE_DIR/node_modules/.package-lock.json" -nt "$NODE_DIR/package-lock.json" ]; then
        echo "install_test_deps: examples/node/node_modules is up to date"
    else
        echo "install_test_deps: npm ci in examples/node"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi

if [ "$CONTAINER" -eq 1 ]; then
    # podman 4.3 (bookworm) with runc; netavark + aardvark-dns give compose networks their DNS
    container_pkgs=(podman runc conmon debootstrap netavark aardvark-dns iptables uidmap ca-certificates)
    missing=()
    for pkg in "${container_pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
            echo "install_test_deps: apt-get not found; install ${missing[*]} by hand" >&2
            exit 1
        fi
        echo "install_test_deps: installing Debian packages ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        as_root apt-get update -qq
        as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "install_test_deps: container tools already installed ($(podman --version))"
    fi
    if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('podman-compose') != '$PODMAN_COMPOSE_VERSION')" \
            2>/dev/null; then
        echo "install_test_deps: pip install podman-compose==$PODMAN_COMPOSE_VERSION"
        python3 -m pip install --quiet --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
    fi
fi
