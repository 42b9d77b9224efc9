#!/usr/bin/env bash
# The README's test command and what CI runs (.ci/run): install what the tests need, lint, test.
#
# What it installs:
#   pip     this project, editable, with its test extras: pip install -e '.[test]' (pytest,
#           hypothesis, grpcio-tools, ruff, matplotlib); into the user site when the system
#           site is not writable
#   Debian  prometheus (prometheus, promtool), nodejs, npm: scripts/install_test_deps.sh.
#           NEEDS ROOT (or sudo without a password); skipped otherwise
#   npm     examples/node's locked packages (@grpc/grpc-js, @grpc/proto-loader): npm ci, no root
#
# Without root it still runs every test it can: a test that needs a missing tool (prometheus,
# promtool, node, podman, ...) skips and says why, and the skipped tests are listed at the end.
# As root the tools were installed, so a missing one fails its test (HERMES_REQUIRE_TOOLS=1).
#
# Usage: bash scripts/test.sh [--fast] [--no-install] [PYTEST ARGS...]
#   --fast        the fast tier only: pytest -m "not slow" (no servers, no subprocesses)
#   --no-install  skip the install steps (use what is installed)
# Exit code: non-zero when ruff or pytest fails; pytest's 5 (no tests collected) and a run
# where no test passed are failures too, never success.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

FAST=0
INSTALL=1
PYTEST_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --fast) FAST=1 ;;
        --no-install) INSTALL=0 ;;
        *) PYTEST_ARGS+=("$arg") ;;
    esac
done

say() { echo "test.sh: $*"; }

ROOT_OK=0
if [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
    ROOT_OK=1
fi

if [ "$INSTALL" -eq 1 ]; then
    say "pip install -e '.[test]'"
    if ! python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'; then
        if [ "$ROOT_OK" -eq 0 ] && python3 -m pip install --quiet --disable-pip-version-check --user -e '.[test]'; then
            say "installed into the user site (not root)"
        else
            say "WARNING: pip install failed; testing with what is installed"
        fi
    fi
    if [ "$ROOT_OK" -eq 1 ]; then
        say "Debian packages and npm packages: scripts/install_test_deps.sh"
        bash scripts/install_test_deps.sh || say "WARNING: scripts/install_test_deps.sh failed; tests needing its tools will fail"
    else
        say "not root (and no password-less sudo): Debian packages (prometheus, nodejs, npm) NOT installed;"
        say "  tests that need them skip. Run 'sudo bash scripts/install_test_deps.sh' to run them too."
        if command -v npm >/dev/null && [ -f examples/node/package-lock.json ] \
            && [ ! -d examples/node/node_modules/@grpc/grpc-js ]; then
            say "npm ci in examples/node"
            (cd examples/node && npm ci --no-audit --no-fund --loglevel=error) || say "WARNING: npm ci failed"
        fi
    fi
fi
: "${HERMES_REQUIRE_TOOLS:=$ROOT_OK}"
export HERMES_REQUIRE_TOOLS

if ! python3 -c "import pytest" 2>/dev/null; then
    say "FAILED: pytest is not importable (pip install -e '.[test]')"
    exit 1
fi

missing=()
for tool in prometheus promtool node npm podman; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$HERMES_REQUIRE_TOOLS" = "1" ]; then
        say "missing tools: ${missing[*]} (HERMES_REQUIRE_TOOLS=1: tests that need them will FAIL)"
    else
        say "missing tools: ${missing[*]} (tests that need them will skip)"
    fi
fi

say "ruff check ."
python3 -m ruff check .
RUFF_RC=$?

if [ "$FAST" -eq 1 ]; then
    PYTEST_ARGS=(-m "not slow" "${PYTEST_ARGS[@]}")
    say "fast tier: pytest -m 'not slow'"
fi
LOG="$(mktemp -t hermes-pytest.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
python3 -m pytest -q -ra "${PYTEST_ARGS[@]}" 2>&1 | tee "$LOG"
RC=${PIPESTATUS[0]}

skipped="$(grep -E '^SKIPPED ' "$LOG" || true)"
if [ -n "$skipped" ]; then
    echo
    say "skipped tests and why:"
    echo "$skipped" | sed 's/^/  /'
fi
summary="$(tail -n 1 "$LOG")"
if [ "$RC" -eq 5 ]; then
    say "FAILED: pytest collected no tests (exit 5): a wrong path, -k or -m? This is not a pass."
elif [ "$RC" -eq 0 ] && ! echo "$summary" | grep -qE '[0-9]+ passed'; then
    say "FAILED: no test passed ($summary). This is not a pass."
    RC=5
fi
if [ "$RUFF_RC" -ne 0 ]; then
    say "FAILED: ruff found problems (above)"
    [ "$RC" -eq 0 ] && RC=$RUFF_RC
fi
[ "$RC" -eq 0 ] && say "OK"
exit "$RC"
