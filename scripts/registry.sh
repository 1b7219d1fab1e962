#!/usr/bin/env bash
# A local, plain-HTTP container registry (Debian 12's docker-registry, distribution 2.8) so that
# docker-container builders, which cannot see a daemon's images, can pull what we build locally.
#
#   bash scripts/registry.sh start             install if missing, start our registry (once)
#   bash scripts/registry.sh status            say what runs
#   bash scripts/registry.sh stop              stop the registry this script started (pid file)
#   bash scripts/registry.sh push IMAGE NAME   tag a local image as 127.0.0.1:PORT/NAME and push it
#                                              (daemon: DOCKER_HOST, default /var/run/docker.sock)
#   bash scripts/registry.sh addr              print 127.0.0.1:PORT
#
# The package's own service is never started (policy-rc.d during the install); we run
# /usr/bin/docker-registry with our config and storage under $REGISTRY_PREFIX.
#
# Addresses (default: listens on 0.0.0.0:$REGISTRY_PORT, so every bridge gateway reaches it):
#   push:  docker tag X 127.0.0.1:PORT/x && docker push 127.0.0.1:PORT/x
#          (any daemon: 127.0.0.0/8 registries are plain HTTP without configuration)
#   pull from a docker-container builder on a bridge network: GATEWAY:PORT/x, where GATEWAY is
#          the gateway of the builder container's network (docker0: 172.17.0.1), with a buildkitd
#          config   [registry."GATEWAY:PORT"]\n  http = true
#   pull from a builder with --driver-opt network=host: 127.0.0.1:PORT/x with
#          [registry."127.0.0.1:PORT"]\n  http = true
#
# Environment:
#   REGISTRY_PREFIX  state dir (default /opt/buildkit-mount-cache-registry): config, storage, log, pid
#   REGISTRY_PORT    port (default 5757)
#   REGISTRY_ADDR    listen address (default 0.0.0.0)
set -euo pipefail
LOG_TAG=registry
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

readonly PREFIX="${REGISTRY_PREFIX:-/opt/buildkit-mount-cache-registry}"
readonly PORT="${REGISTRY_PORT:-5757}"
readonly ADDR="${REGISTRY_ADDR:-0.0.0.0}"
readonly BIN=/usr/bin/docker-registry
readonly PIDFILE="$PREFIX/registry.pid"
readonly LOGFILE="$PREFIX/registry.log"
readonly CONFIG="$PREFIX/config.yml"
readonly STORAGE="$PREFIX/storage"

answers() { curl -fsS --max-time 3 "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1; }

install_registry() {
  command -v curl >/dev/null || apt_install_missing curl
  [[ -x $BIN ]] && return 0
  local before
  before="$(pgrep -x docker-registry || true)"
  apt_install_missing docker-registry
  # Belt and braces: a registry the install started anyway is stopped (it was started by us).
  if [[ -d /run/systemd/system ]]; then
    systemctl stop docker-registry.service 2>/dev/null || true
    systemctl disable docker-registry.service 2>/dev/null || true
  fi
  local pid
  for pid in $(comm -13 <(echo "$before" | sort) <(pgrep -x docker-registry | sort || true)); do
    log "stopping docker-registry pid $pid started by the package install"
    kill "$pid" 2>/dev/null || true
  done
}

write_config() {
  mkdir -p "$STORAGE"
  cat >"$CONFIG.new" <<EOF
# written by buildkit-mount-cache scripts/registry.sh
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $STORAGE
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
  mv "$CONFIG.new" "$CONFIG"
}

cmd_start() {
  [[ $EUID -eq 0 ]] || die "start needs root"
  lock_dir "$PREFIX"
  install_registry
  local pid
  pid="$(pid_alive "$PIDFILE" "$BIN")"
  if [[ -n $pid ]] && answers; then
    log "registry already running (ours, pid $pid) on $ADDR:$PORT"
    return 0
  fi
  if [[ -z $pid ]] && answers; then
    die "something else answers on 127.0.0.1:$PORT (not our registry); set REGISTRY_PORT"
  fi
  [[ -n $pid ]] && stop_pid "$pid" "docker-registry (not answering)"
  write_config
  log "starting $BIN on $ADDR:$PORT (storage $STORAGE, log $LOGFILE)"
  printf '\n==== %s registry.sh start\n' "$(date -Is)" >>"$LOGFILE"
  (cd / && exec setsid "$BIN" serve "$CONFIG" >>"$LOGFILE" 2>&1 </dev/null 9>&-) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  disown "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  until answers; do
    kill -0 "$pid" 2>/dev/null || die "docker-registry exited: $(tail -n 3 "$LOGFILE")"
    ((SECONDS < deadline)) || { stop_pid "$pid" docker-registry; die "registry did not answer in 30s; see $LOGFILE"; }
    sleep 0.2
  done
  log "registry pid $pid answers on http://127.0.0.1:$PORT/v2/"
}

cmd_stop() {
  [[ -d $PREFIX ]] || { echo "registry: not set up ($PREFIX missing)"; return 0; }
  lock_dir "$PREFIX"
  local pid
  pid="$(pid_alive "$PIDFILE" "$BIN")"
  rm -f "$PIDFILE.stale"
  if [[ -z $pid ]]; then
    rm -f "$PIDFILE"
    echo "registry: no docker-registry started by registry.sh is running"
    return 0
  fi
  stop_pid "$pid" docker-registry
  rm -f "$PIDFILE"
  echo "registry: stopped pid $pid"
}

cmd_status() {
  local pid
  pid="$(pid_alive "$PIDFILE" "$BIN")"
  if [[ -n $pid ]]; then
    echo "registry: running, started by registry.sh (pid $pid, $ADDR:$PORT, storage $STORAGE, log $LOGFILE)"
  else
    echo "registry: none started by registry.sh"
  fi
  if answers; then
    echo "http://127.0.0.1:$PORT/v2/: answers; repositories: $(curl -fsS --max-time 3 "http://127.0.0.1:$PORT/v2/_catalog" | tr -d '\n')"
  else
    echo "http://127.0.0.1:$PORT/v2/: no answer"
  fi
}

cmd_push() {
  local image="${1:?usage: push IMAGE NAME}" name="${2:?usage: push IMAGE NAME}"
  local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  answers || die "no registry answers on 127.0.0.1:$PORT (run: bash $0 start)"
  local ref="127.0.0.1:$PORT/$name"
  [[ $name == *:* || $name == *@* ]] || ref="$ref:latest"
  log "pushing $image as $ref (daemon $host)"
  local client
  client="$(docker_client)"
  "$client" -H "$host" tag "$image" "$ref"
  "$client" -H "$host" push "$ref" >&2
  echo "$ref"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
push) shift; cmd_push "$@" ;;
addr) echo "127.0.0.1:$PORT" ;;
*)
  echo "usage: $0 start|stop|status|addr|push IMAGE NAME" >&2
  exit 2
  ;;
esac
