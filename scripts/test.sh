#!/usr/bin/env bash
# The whole test suite: unit tests and the integration tests that build real images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The venv's console scripts (globus-compute-endpoint, ...) are found as on any machine
# where gardenbuild is installed: on PATH. No shell activation is assumed.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
