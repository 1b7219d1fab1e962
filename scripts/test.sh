#!/usr/bin/env bash
# The test command (README, .ci/run): on a fresh Debian 12 machine as root it
# installs the node packages, provisions and starts the local BuildKit engine,
# lints, checks that dist/ matches the sources, and runs every jest project (unit and
# integration: real engine, real @actions/cache client, local cache service).
# A dockerd this script had to start is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund
fi

engine_was_ours=""
if ! bash scripts/engine.sh status 2>/dev/null | grep -q 'answers'; then
  engine_was_ours=1
fi
stop_engine() { if [[ -n $engine_was_ours ]]; then bash scripts/engine.sh stop || true; fi; }
trap stop_engine EXIT
bash scripts/engine.sh start

npm run --silent typecheck
npm run --silent lint
bash scripts/check-dist.sh
NODE_OPTIONS=--experimental-vm-modules npx jest --runInBand "$@"
