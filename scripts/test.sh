#!/usr/bin/env bash
# The test command (README, .ci/run). On a fresh Debian 12 machine as root it installs the node
# packages, lints, checks that dist/ matches the sources, runs the unit tier, then provisions the
# builders users run and runs the integration tier on each (real engines, the real @actions/cache
# client, the local cache service, the bundled steps under the runner's Node 24):
#
#   classic         dockerd 26 + buildx 0.13 (docker driver) and the buildx-less
#                   `DOCKER_BUILDKIT=1 docker build` client: every integration test
#   runner          Docker 28.5 + buildx 0.29 (Debian sid), docker driver: the full cycle
#   container       a docker-container builder on that engine as setup-buildx-action creates it
#                   (bridge network: streams over its gateway): the cycle, the lifecycle, hostile
#                   archives, the engine and cache faults, the README examples, delta saves
#   container-host  the same with --driver-opt network=host (loopback streams): the cycle
#
#   bash scripts/test.sh               everything
#   bash scripts/test.sh --itg-only    only the integration tier (what `npm run test:itg` runs)
#   BMC_TEST_PROFILES="classic container" bash scripts/test.sh    a subset of the profiles
#
# Daemons this script had to start are stopped again at the end; what it provisions is cached
# on the machine (keyed on the package versions) so a second run only starts them.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG_TAG=tests
# shellcheck source=SCRIPTDIR/lib/common.sh
source scripts/lib/common.sh

itg_only=""
if [[ ${1:-} == --itg-only ]]; then
  itg_only=1
  shift
fi
profiles="${BMC_TEST_PROFILES:-classic runner container container-host}"

if [[ ! -d node_modules ]] || ! cmp -s package-lock.json node_modules/.package-lock.json 2>/dev/null; then
  npm ci --no-audit --no-fund
fi

jest() { NODE_OPTIONS=--experimental-vm-modules npx jest "$@"; }

if [[ -z $itg_only ]]; then
  npm run --silent typecheck
  npm run --silent lint
  bash scripts/check-dist.sh
  jest "$@" --selectProjects unit
fi

# Starts a service with `bash scripts/NAME start` and registers its stop (lib/common.sh's CLEANUPS,
# run at exit) when it was not running before.
start() {
  local script="$1" status
  # Read whole before matching: grep -q quitting early would break the pipe (and pipefail the test).
  status="$(bash "scripts/$script" status 2>/dev/null || true)"
  if ! grep -qE ': answers|: running' <<<"$status"; then CLEANUPS+=("bash scripts/$script stop"); fi
  bash "scripts/$script" start
}

start engine.sh
BMC_TEST_NODE="$(bash scripts/node24.sh)"
export BMC_TEST_NODE
echo "steps run under $("$BMC_TEST_NODE" --version)"

run_profile() {
  local name="$1"
  shift
  echo "==== integration tier, profile $name"
  (
    export BMC_TEST_PROFILE="$name"
    case $name in
    classic) ;;
    runner)
      eval "$(bash scripts/runner-engine.sh env)"
      export BUILDX_BUILDER=default
      ;;
    container)
      eval "$(bash scripts/builders.sh env bmc-container)"
      BMC_TEST_UTILITY_IMAGE="$(bash scripts/builders.sh info | sed -nE 's/^utility: +([^ ]+) \|.*/\1/p')"
      export BMC_TEST_UTILITY_IMAGE BMC_TEST_STREAM_LABEL='gateway stream'
      ;;
    container-host)
      eval "$(bash scripts/builders.sh env bmc-container-host)"
      BMC_TEST_UTILITY_IMAGE="$(bash scripts/builders.sh info | sed -nE 's/^utility: .*\| +([^ ]+)$/\1/p')"
      export BMC_TEST_UTILITY_IMAGE
      ;;
    esac
    jest "$@" --selectProjects itg
  )
}

for p in $profiles; do
  case $p in
  classic) run_profile classic "$@" ;;
  runner)
    start runner-engine.sh
    run_profile runner __tests__/cycle.itg.test.ts
    ;;
  container | container-host)
    if [[ -z ${builders_started:-} ]]; then
      # builders.sh starts these itself when needed; started here first, so their stops are registered too.
      start runner-engine.sh
      start registry.sh
      start builders.sh
      builders_started=1
    fi
    if [[ $p == container ]]; then
      run_profile container __tests__/cycle.itg.test.ts __tests__/lifecycle.itg.test.ts __tests__/hostile.itg.test.ts \
        __tests__/faults.itg.test.ts __tests__/examples.itg.test.ts __tests__/delta.itg.test.ts
    else
      run_profile container-host __tests__/cycle.itg.test.ts
    fi
    ;;
  *)
    echo "unknown profile $p (classic, runner, container, container-host)" >&2
    exit 2
    ;;
  esac
done
