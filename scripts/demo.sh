#!/usr/bin/env bash
# The demo command (README): installs what it needs on a fresh Debian 12
# machine as root, starts the local engine, and runs one cold and one warm
# restore → build → save cycle of the action. Pass --classic for the
# buildx-less `DOCKER_BUILDKIT=1 docker build` path.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund
fi
bash scripts/engine.sh start
exec npx tsx scripts/demo.ts "$@"
