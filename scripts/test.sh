#!/usr/bin/env bash
# Install HERMES with its test extras and everything the tests need (Prometheus,
# the Node.js example's packages), then run the linter and the whole test suite.
# This is the README's second quick-start command and what CI runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'
bash scripts/install_test_deps.sh
python3 -m ruff check .
python3 -m pytest -q "$@"
