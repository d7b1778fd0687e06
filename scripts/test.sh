#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets itself up, then runs pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/agent -k loop).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
