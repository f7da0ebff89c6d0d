#!/usr/bin/env bash
# The whole test suite: unit tests and the integration tests that build real images.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
