#!/usr/bin/env bash
# Run the app locally with everything it needs (no Azure account): sets itself up, then starts
# Azurite, the demo MCP server, the offline model and the Functions host. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m devstack "$@"
