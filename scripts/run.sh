#!/usr/bin/env bash
# Run the app locally with everything it needs (no Azure account): sets itself up, then starts
# Azurite, the demo MCP server, the offline model and the Functions host. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
# The chat page first: it is what a person opens (devstack prints it again once all is up).
port=7071
previous=""
for arg in "$@"; do
  case "$arg" in --port=*) port="${arg#--port=}" ;; esac
  if [ "$previous" = "--port" ]; then port="$arg"; fi
  previous="$arg"
done
echo "Chat page: http://localhost:${port}/api/ui  (ready once everything below has started)"
scripts/bootstrap.sh
exec .venv/bin/python -m devstack "$@"
