#!/usr/bin/env bash
# Fails when the committed dist/ (bundles, thin entry points, licenses.txt)
# differs from a fresh bundle of the sources, or the CLI bin is not executable.
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/input-defaults.mjs --check
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
node scripts/bundle.mjs "$fresh/dist"
if ! diff -r dist "$fresh/dist" >/dev/null; then
  echo "dist/ is out of date: run 'npm run build' and commit dist/." >&2
  diff -rq dist "$fresh/dist" >&2 || true
  exit 1
fi
if [ ! -x dist/cli.cjs ]; then
  echo "dist/cli.cjs is not executable: run 'npm run build' and commit dist/." >&2
  exit 1
fi
echo "dist/ is up to date."
