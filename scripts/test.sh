#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets itself up, runs ruff, mypy, the MCP conformance
# suite against our sample servers and client (python -m conformance), then pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/agent -k loop).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PYTHONDONTWRITEBYTECODE=1
.venv/bin/ruff check .
echo "== mypy (packages and strictness: pyproject.toml [tool.mypy])"
.venv/bin/mypy
echo "== MCP conformance (conformance/expected-failures.txt lists known failures)"
.venv/bin/python -m conformance
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
