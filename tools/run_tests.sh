#!/usr/bin/env bash
# Run the test suite in the environment made by tools/setup_env.sh.
#   bash tools/run_tests.sh [pytest args]
# Tests that need the real sample data at ../shared/data skip with a reason when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LZU_VENV:-.venv}
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore::DeprecationWarning}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2 pytest workers on 2 cores
exec "$VENV/bin/python" -m pytest -n 2 --dist loadgroup -ra "$@" tests
