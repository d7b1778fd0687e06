#!/usr/bin/env bash
# Idempotent setup: a venv with the pinned Python packages, a second venv with the infrastructure
# checkers (checkov conflicts with the first), and node_modules (Azurite, the reference MCP server,
# the MCP conformance suite and the Node.js 22 it needs) from package-lock.json. Re-runs only what
# changed since the last run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
py_stamp=$(stamp_of requirements.txt requirements-dev.txt)
if [ "$(cat .venv/.deps-stamp 2>/dev/null)" != "$py_stamp" ]; then
  echo "bootstrap: installing Python packages"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$py_stamp" > .venv/.deps-stamp
fi

if [ ! -x .venv-infra/bin/python ]; then
  echo "bootstrap: creating .venv-infra"
  "$PYTHON" -m venv .venv-infra
fi
infra_stamp=$(stamp_of requirements-infra.txt)
if [ "$(cat .venv-infra/.deps-stamp 2>/dev/null)" != "$infra_stamp" ]; then
  echo "bootstrap: installing the infrastructure checkers (checkov)"
  .venv-infra/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
  echo "$infra_stamp" > .venv-infra/.deps-stamp
fi

node_stamp=$(stamp_of package.json package-lock.json)
if [ "$(cat node_modules/.deps-stamp 2>/dev/null)" != "$node_stamp" ]; then
  echo "bootstrap: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$node_stamp" > node_modules/.deps-stamp
fi

# The browser test drives Debian's chromium (Playwright's own browser download cannot work offline).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing chromium (apt)"
    apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: chromium is missing and this is not root: the browser test will be skipped" >&2
  fi
fi
