#!/usr/bin/env bash
# Sets up tfvae (scripts/setup.sh) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m pytest -q -ra --durations=25 tests "$@"
