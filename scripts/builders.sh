#!/usr/bin/env bash
# docker-container builders as docker/setup-buildx-action creates them by default, on a local
# engine, pulling their FROM images from our local registry (see /work/shared/NOTES.md).
#
#   bash scripts/builders.sh start    engine + registry + BuildKit image (once), then the builders
#                                     (created once, bootstrapped), utility image pushed, verified
#   bash scripts/builders.sh verify   only the checks (pull from the registry, cache mount, TCP to
#                                     the gateway / loopback)
#   bash scripts/builders.sh status   list the builders and their containers
#   bash scripts/builders.sh stop     `docker buildx rm` the builders this script created
#   bash scripts/builders.sh env [NAME]   shell lines that target the engine (and builder NAME)
#   bash scripts/builders.sh info     gateway, registry addresses and image references
#
# The builders (names: $BUILDERS_PREFIX-container and $BUILDERS_PREFIX-container-host):
#   docker buildx create --name NAME --driver docker-container \
#     --buildkitd-flags '--allow-insecure-entitlement security.insecure --allow-insecure-entitlement network.host' \
#     --buildkitd-config TOML [--driver-opt network=host]
#   docker buildx inspect --bootstrap NAME
# TOML marks the local registry as plain HTTP under every name a builder uses for it:
#   [registry."GATEWAY:PORT"]  (bridge builder: GATEWAY = gateway of the daemon's default bridge)
#   [registry."127.0.0.1:PORT"] (network=host builder)
# Gateway discovery: `docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}'`
# before creating; after: `docker inspect buildx_buildkit_NAME0 --format '{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}'`.
#
# Options / environment:
#   --engine runner|system | BUILDERS_ENGINE   runner = scripts/runner-engine.sh's Docker 28.5 +
#            buildx 0.29 (default); system = scripts/engine.sh's dockerd 26 on /var/run/docker.sock
#            with buildx 0.13 (its builders live in a private DOCKER_CONFIG, $PREFIX/docker-config-system)
#   BUILDERS_PREFIX  builder name prefix (default bmc)
#   BUILDERS_STATE   state dir (default /opt/buildkit-mount-cache-builders)
#   REGISTRY_PORT    as scripts/registry.sh (default 5757)
set -euo pipefail
LOG_TAG=builders
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

ENGINE="${BUILDERS_ENGINE:-runner}"
readonly NAME_PREFIX="${BUILDERS_PREFIX:-bmc}"
readonly STATE="${BUILDERS_STATE:-/opt/buildkit-mount-cache-builders}"
readonly REG_PORT="${REGISTRY_PORT:-5757}"
readonly UTILITY_IMAGE=buildkit-mount-cache/utility:busybox
readonly FLAGS='--allow-insecure-entitlement security.insecure --allow-insecure-entitlement network.host'

cmd="${1:-}"
shift || true
ARGS=()
while (($#)); do
  case "$1" in
  --engine) ENGINE="$2"; shift ;;
  --engine=*) ENGINE="${1#--engine=}" ;;
  *) ARGS+=("$1") ;;
  esac
  shift
done

# The client environment for the chosen engine.
case "$ENGINE" in
runner)
  eval "$(bash "$HERE/runner-engine.sh" env)"
  readonly SOCK="${DOCKER_HOST#unix://}"
  readonly DOCKER_BIN="${DOCKER_CONFIG%/docker-config}/bin/docker"
  ;;
system)
  export DOCKER_HOST=unix:///var/run/docker.sock DOCKER_CONFIG="$STATE/docker-config-system"
  unset DOCKER_CONTEXT
  readonly SOCK=/var/run/docker.sock
  # engine.sh's 28.x client if there is one (buildx needs a client >= 19.03); the plugin is the
  # system's /usr/libexec/docker/cli-plugins/docker-buildx (0.13).
  if [[ -x /usr/local/bin/docker ]]; then DOCKER_BIN=/usr/local/bin/docker; else DOCKER_BIN=/usr/bin/docker; fi
  readonly DOCKER_BIN
  ;;
*) die "--engine must be runner or system, not $ENGINE" ;;
esac
readonly BRIDGE_BUILDER="$NAME_PREFIX-container"
readonly HOST_BUILDER="$NAME_PREFIX-container-host"
readonly ENGINE_STATE="$STATE/$ENGINE"
dock() { "$DOCKER_BIN" "$@"; }

start_engine() {
  case "$ENGINE" in
  runner) bash "$HERE/runner-engine.sh" start >&2 ;;
  system) bash "$HERE/engine.sh" start >&2 ;;
  esac
  mkdir -p "$DOCKER_CONFIG"
  [[ -s $DOCKER_CONFIG/config.json ]] || echo '{}' >"$DOCKER_CONFIG/config.json"
}

gateway() { dock network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}'; }
container_gateway() { dock inspect "buildx_buildkit_${1}0" --format '{{range .NetworkSettings.Networks}}{{.Gateway}}{{end}}' 2>/dev/null || true; }

write_config() {
  local gw="$1" file="$2"
  cat >"$file.new" <<EOF
# written by buildkit-mount-cache scripts/builders.sh: the local registry (scripts/registry.sh) is plain HTTP
[registry."$gw:$REG_PORT"]
  http = true
  insecure = true

[registry."127.0.0.1:$REG_PORT"]
  http = true
  insecure = true
EOF
  mv "$file.new" "$file"
}

# Create NAME (once; again when its config or the BuildKit image changed) and bootstrap it.
ensure_builder() {
  local name="$1" gw="$2"
  shift 2
  local conf="$ENGINE_STATE/$name.toml" key keyfile="$ENGINE_STATE/$name.created" image
  write_config "$gw" "$conf"
  image="$(dock image inspect --format '{{.Id}}' moby/buildkit:buildx-stable-1)"
  key="$(printf '%s\n' "$(cat "$conf")" "$FLAGS" "$*" "$image" | sha256sum | cut -c1-16)"
  if dock buildx inspect "$name" >/dev/null 2>&1; then
    if [[ "$(cat "$keyfile" 2>/dev/null)" == "$key" ]]; then
      dock buildx inspect --bootstrap "$name" >/dev/null
      log "builder $name exists (bootstrapped)"
      return 0
    fi
    log "builder $name is out of date (config, flags or image changed): removing it"
    dock buildx rm "$name" >&2 || true
  fi
  log "docker buildx create --name $name --driver docker-container $* --buildkitd-config $conf"
  dock buildx create --name "$name" --driver docker-container --buildkitd-flags "$FLAGS" \
    --buildkitd-config "$conf" "$@" >&2
  echo "$key" >"$keyfile"
  dock buildx inspect --bootstrap "$name" >&2
}

cmd_start() {
  [[ $EUID -eq 0 ]] || die "start needs root"
  lock_dir "$STATE"
  mkdir -p "$ENGINE_STATE"
  start_engine
  bash "$HERE/registry.sh" start >&2
  bash "$HERE/buildkit-image.sh" build --host "unix://$SOCK" >&2
  DOCKER_HOST="unix://$SOCK" bash "$HERE/registry.sh" push "$UTILITY_IMAGE" "$UTILITY_IMAGE" >/dev/null
  local gw
  gw="$(gateway)"
  [[ -n $gw ]] || die "cannot tell the default bridge's gateway"
  ensure_builder "$BRIDGE_BUILDER" "$gw"
  ensure_builder "$HOST_BUILDER" "$gw" --driver-opt network=host
  local cgw
  cgw="$(container_gateway "$BRIDGE_BUILDER")"
  [[ $cgw == "$gw" ]] || die "builder container's gateway is '$cgw', the bridge's is '$gw'"
  cmd_verify
  cmd_info
}

# ---------------------------------------------------------------------------------------------
# Checks: each builder pulls the utility image from the registry and runs a cache-mount RUN that
# also talks TCP to a listener on the host (bridge builder: the gateway address; host builder:
# 127.0.0.1).
cmd_verify() {
  local gw
  gw="$(gateway)"
  verify_builder "$BRIDGE_BUILDER" "$gw:$REG_PORT/$UTILITY_IMAGE" "$gw"
  verify_builder "$HOST_BUILDER" "127.0.0.1:$REG_PORT/$UTILITY_IMAGE" 127.0.0.1
}

verify_builder() {
  local name="$1" from="$2" listen="$3" tmp nonce port
  tmp="$(mktemp -d)"
  CLEANUPS+=("rm -rf '$tmp'")
  nonce="$(date +%s%N)"
  # A listener for one connection (30 s at most): sends a line, records what it receives.
  node -e '
    const net = require("net"), fs = require("fs");
    const [host, dir] = process.argv.slice(1);
    const srv = net.createServer((s) => {
      let got = "";
      s.on("data", (d) => { got += d; });
      s.on("end", () => { fs.writeFileSync(dir + "/received", got); s.end(); srv.close(); });
      s.write("hello-from-host\n");
      s.end();
    });
    srv.listen(0, host, () => fs.writeFileSync(dir + "/port", String(srv.address().port)));
    setTimeout(() => process.exit(3), 30000).unref();
  ' "$listen" "$tmp" &
  local lpid=$!
  CLEANUPS+=("kill $lpid 2>/dev/null")
  local i
  for ((i = 0; i < 50; i++)); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  port="$(cat "$tmp/port")"
  cat >"$tmp/Dockerfile" <<EOF
FROM $from
ARG NONCE
RUN --mount=type=cache,id=x,target=/c echo hi > /c/f && cat /c/f && echo "ping \$NONCE" | nc $listen $port > /c/from-host && cat /c/from-host && grep -q hello-from-host /c/from-host
EOF
  log "checking builder $name: FROM $from, TCP to $listen:$port"
  if ! dock buildx build --builder "$name" --progress plain --build-arg "NONCE=$nonce" "$tmp" >"$tmp/build.log" 2>&1; then
    tail -n 25 "$tmp/build.log" >&2
    die "build on $name failed"
  fi
  wait "$lpid" 2>/dev/null || true
  grep -q "ping $nonce" "$tmp/received" 2>/dev/null || die "the host listener on $listen:$port did not receive the RUN's line"
  log "builder $name: pulled $from, cache mount written, TCP $listen:$port both ways: ok"
}

cmd_status() {
  local n
  for n in "$BRIDGE_BUILDER" "$HOST_BUILDER"; do
    if dock buildx inspect "$n" >/dev/null 2>&1; then
      echo "$n: $(dock buildx inspect "$n" | awk '/^Status:/ {print $2}' | tr '\n' ' ')container $(dock inspect --format '{{.State.Status}}' "buildx_buildkit_${n}0" 2>/dev/null || echo missing)"
    else
      echo "$n: not created"
    fi
  done
}

cmd_stop() {
  lock_dir "$STATE"
  local n
  for n in "$BRIDGE_BUILDER" "$HOST_BUILDER"; do
    if [[ -e $ENGINE_STATE/$n.created ]] && dock buildx inspect "$n" >/dev/null 2>&1; then
      log "docker buildx rm $n"
      dock buildx rm "$n" >&2 || true
    fi
    rm -f "$ENGINE_STATE/$n.created"
  done
}

cmd_env() {
  case "$ENGINE" in
  runner) bash "$HERE/runner-engine.sh" env ;;
  system)
    printf 'export DOCKER_HOST=%q\nexport DOCKER_CONFIG=%q\nunset DOCKER_CONTEXT\n' "$DOCKER_HOST" "$DOCKER_CONFIG"
    ;;
  esac
  [[ -n ${1:-} ]] && printf 'export BUILDX_BUILDER=%q\n' "$1"
  return 0
}

cmd_info() {
  local gw
  gw="$(gateway)"
  cat <<EOF
engine:    $ENGINE ($DOCKER_HOST, DOCKER_CONFIG=$DOCKER_CONFIG, client $DOCKER_BIN)
gateway:   $gw (default bridge; builder containers reach the host there)
registry:  push as 127.0.0.1:$REG_PORT/NAME; pull as $gw:$REG_PORT/NAME (bridge builder) or 127.0.0.1:$REG_PORT/NAME (host builder)
builders:  $BRIDGE_BUILDER (bridge network: stream to a listener on $gw), $HOST_BUILDER (network=host: loopback)
utility:   $gw:$REG_PORT/$UTILITY_IMAGE | 127.0.0.1:$REG_PORT/$UTILITY_IMAGE
EOF
}

case "$cmd" in
start) cmd_start ;;
verify) cmd_verify ;;
status) cmd_status ;;
stop) cmd_stop ;;
env) cmd_env "${ARGS[@]}" ;;
info) cmd_info ;;
*)
  echo "usage: $0 start|verify|status|stop|env [NAME]|info [--engine runner|system]" >&2
  exit 2
  ;;
esac
