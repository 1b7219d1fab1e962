#!/usr/bin/env bash
# A second, GitHub-runner-like engine beside scripts/engine.sh's dockerd 26: Docker 28.5 +
# buildx 0.29 + containerd 2.1 from Debian sid's packages (see /work/shared/NOTES.md,
# "docker-container builders and runner-like engines").
#
#   bash scripts/runner-engine.sh start    fetch what is missing, start containerd + dockerd (once),
#                                          import the utility image, check versions and a build
#   bash scripts/runner-engine.sh status   say what runs
#   bash scripts/runner-engine.sh stop     stop the dockerd and containerd this script started
#                                          (pid files) and remove the bridge it created
#   bash scripts/runner-engine.sh env      print the shell lines that point a client at it:
#                                          eval "$(bash scripts/runner-engine.sh env)"
#
# Side by side with /var/run/docker.sock's daemon: its own socket ($RUN_DIR/docker.sock),
# --data-root, --exec-root, --pidfile, --config-file, its own containerd (own root, state, socket,
# opt dir; CRI/NRI off), its own bridge device $RUNNER_BRIDGE ($RUNNER_BRIDGE_CIDR; no iptables,
# no masquerading: containers reach the host's gateway address, nothing beyond).
# Never pass --default-address-pool here (nor --bridge=none): on every start after the first, dockerd
# then deletes the device named docker0 (daemon_unix.go removeDefaultBridgeInterface), which is the
# other daemon's bridge. User-defined networks come from the default pools; libnetwork skips
# ranges that overlap a route on the host (docker0's 172.17.0.0/16, $RUNNER_BRIDGE_CIDR).
# Runtime: Debian 12's /usr/sbin/runc (sid's runc needs glibc 2.38). docker-init: /usr/bin/tini-static.
# Clients: sid's docker CLI 28.5 ($PREFIX/bin/docker) with buildx 0.29 in $PREFIX/docker-config/cli-plugins
# (the system's /usr/libexec/docker/cli-plugins/docker-buildx, buildx 0.13, is not touched).
#
# Environment:
#   RUNNER_PREFIX       cache + data dir (default /opt/buildkit-mount-cache-runner)
#   RUNNER_RUN_DIR      sockets and pid files (default /run/buildkit-mount-cache-runner)
#   RUNNER_BRIDGE       bridge device (default bmc-run0)
#   RUNNER_BRIDGE_CIDR  its address (default 10.229.41.1/24; docker0 is 172.17.0.1/16)
#   RUNNER_SUITE        Debian suite (default sid)
#   RUNNER_REFRESH=1    refresh the private package lists (else only when missing)
#   RUNNER_WAIT         seconds to wait for a daemon (default 60)
#   RUNNER_STORAGE_DRIVER  storage drivers to try in order (default "overlay2 vfs")
set -euo pipefail
LOG_TAG=runner-engine
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

readonly PREFIX="${RUNNER_PREFIX:-/opt/buildkit-mount-cache-runner}"
readonly RUN_DIR="${RUNNER_RUN_DIR:-/run/buildkit-mount-cache-runner}"
readonly BRIDGE="${RUNNER_BRIDGE:-bmc-run0}"
readonly BRIDGE_CIDR="${RUNNER_BRIDGE_CIDR:-10.229.41.1/24}"
readonly SUITE="${RUNNER_SUITE:-sid}"
readonly WAIT="${RUNNER_WAIT:-60}"
readonly DRIVERS="${RUNNER_STORAGE_DRIVER:-overlay2 vfs}"
readonly PACKAGES=(docker.io docker-cli docker-buildx containerd)

readonly ROOT="$PREFIX/root"
readonly DOCKERD="$ROOT/usr/sbin/dockerd"
readonly CONTAINERD="$ROOT/usr/bin/containerd"
readonly DOCKER_CLI="$ROOT/usr/bin/docker"
readonly BUILDX_SRC="$ROOT/usr/libexec/docker/cli-plugins/docker-buildx"
readonly BIN_DIR="$PREFIX/bin"
readonly DOCKER_CONFIG_DIR="$PREFIX/docker-config"
readonly SOCK="$RUN_DIR/docker.sock"
readonly CTRD_SOCK="$RUN_DIR/containerd/containerd.sock"
readonly DOCKERD_PID="$RUN_DIR/dockerd.pid"
readonly CTRD_PID="$RUN_DIR/containerd.pid"
readonly DOCKERD_LOG="$PREFIX/dockerd.log"
readonly CTRD_LOG="$PREFIX/containerd.log"
readonly BRIDGE_MARK="$RUN_DIR/bridge.created"
readonly UTILITY_IMAGE=buildkit-mount-cache/utility:busybox

# The client for our own checks: sid's 28.5 CLI with buildx 0.29, pointed at our socket only.
dock() { DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$DOCKER_CONFIG_DIR" DOCKER_CONTEXT='' "$DOCKER_CLI" "$@"; }
daemon_answers() { [[ -x $DOCKER_CLI && -S $SOCK ]] && timeout 10 env DOCKER_HOST="unix://$SOCK" DOCKER_CONFIG="$DOCKER_CONFIG_DIR" "$DOCKER_CLI" info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
ctrd_answers() { [[ -S $CTRD_SOCK ]] && timeout 10 "$ROOT/usr/bin/ctr" --address "$CTRD_SOCK" version >/dev/null 2>&1; }
gateway_ip() { echo "${BRIDGE_CIDR%/*}"; }

# ---------------------------------------------------------------------------------------------
# Step 1: Debian 12's runc and tini (and busybox for the utility image), from the system's apt.
install_base() {
  apt_install_missing runc tini busybox-static iproute2
}

# ---------------------------------------------------------------------------------------------
# Step 2: sid's docker.io, docker-cli, docker-buildx, containerd, unpacked under $ROOT.
# Cached: $ROOT/.versions names the package versions; refetched only when the lists say otherwise.
fetch_engine() {
  papt_init "$PREFIX/apt" "$SUITE"
  if [[ ! -e $PAPT_DIR/lists/.updated || ${RUNNER_REFRESH:-} == 1 ]]; then papt_update force; fi
  # Unchanged lists since the last unpack: nothing to look up (apt-cache over sid's lists is slow).
  if [[ -x $DOCKERD && -x $DOCKER_CLI && -x $BUILDX_SRC && $ROOT/.versions -nt $PAPT_DIR/lists/.updated ]]; then
    return 0
  fi
  local want p v
  want=""
  for p in "${PACKAGES[@]}"; do
    v="$(papt_version "$p")"
    [[ -n $v ]] || die "no $p in the $SUITE lists ($PAPT_DIR)"
    want+="$p=$v "
  done
  if [[ -x $DOCKERD && -x $CONTAINERD && -x $DOCKER_CLI && -x $BUILDX_SRC && "$(cat "$ROOT/.versions" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  local debs="$PREFIX/debs/${want// /_}"
  debs="${debs%_}"
  log "fetching $want from $SUITE"
  mkdir -p "$debs"
  local need=()
  for p in "${PACKAGES[@]}"; do compgen -G "$debs/${p}_*.deb" >/dev/null || need+=("$p"); done
  if ((${#need[@]})); then (cd "$debs" && apt-get "${PAPT_OPTS[@]}" download -q "${need[@]}" >&2); fi
  rm -rf "$ROOT.new"
  mkdir -p "$ROOT.new"
  local deb
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
  [[ -x $ROOT.new/usr/sbin/dockerd ]] || die "no usr/sbin/dockerd in $SUITE's docker.io"
  # docker-init is a link to tini-static from the tini package: use the system's.
  if [[ -L $ROOT.new/usr/bin/docker-init || ! -e $ROOT.new/usr/bin/docker-init ]]; then
    ln -sfn /usr/bin/tini-static "$ROOT.new/usr/bin/docker-init"
  fi
  echo "$want" >"$ROOT.new/.versions"
  rm -rf "$ROOT"
  mv "$ROOT.new" "$ROOT"
  log "unpacked into $ROOT"
}

# Step 3: the clients: $BIN_DIR/docker (sid's CLI) and buildx in a private DOCKER_CONFIG.
install_clients() {
  mkdir -p "$BIN_DIR" "$DOCKER_CONFIG_DIR/cli-plugins"
  ln -sfn "$DOCKER_CLI" "$BIN_DIR/docker"
  if ! cmp -s "$BUILDX_SRC" "$DOCKER_CONFIG_DIR/cli-plugins/docker-buildx"; then
    install -m 0755 "$BUILDX_SRC" "$DOCKER_CONFIG_DIR/cli-plugins/docker-buildx.new"
    mv -f "$DOCKER_CONFIG_DIR/cli-plugins/docker-buildx.new" "$DOCKER_CONFIG_DIR/cli-plugins/docker-buildx"
  fi
  [[ -s $DOCKER_CONFIG_DIR/config.json ]] || echo '{}' >"$DOCKER_CONFIG_DIR/config.json"
}

# ---------------------------------------------------------------------------------------------
# Step 4: the bridge device.
setup_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    # The address must not be on any other device (docker0 is 172.17.0.1/16).
    if ip -4 -o addr show | awk '{print $4}' | grep -qx "$BRIDGE_CIDR"; then
      die "$BRIDGE_CIDR is already assigned to another device; set RUNNER_BRIDGE_CIDR"
    fi
    log "creating bridge $BRIDGE ($BRIDGE_CIDR)"
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" >"$BRIDGE_MARK"
  fi
  if ! ip -4 -o addr show dev "$BRIDGE" | awk '{print $4}' | grep -qx "$BRIDGE_CIDR"; then
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

# ---------------------------------------------------------------------------------------------
# Step 5: containerd 2.1 with its own state.
daemon_path() { echo "/usr/sbin:$ROOT/usr/sbin:$ROOT/usr/libexec/docker:$ROOT/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/bin:/sbin:/bin"; }

start_containerd() {
  local pid
  pid="$(pid_alive "$CTRD_PID" "$CONTAINERD")"
  if [[ -n $pid ]] && ctrd_answers; then return 0; fi
  [[ -n $pid ]] && stop_pid "$pid" "containerd (not answering)"
  mkdir -p "$RUN_DIR/containerd" "$PREFIX/containerd" "$PREFIX/containerd-opt"
  cat >"$PREFIX/containerd.toml" <<EOF
# written by buildkit-mount-cache scripts/runner-engine.sh
version = 3
root = "$PREFIX/containerd"
state = "$RUN_DIR/containerd/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.cri.v1.runtime",
  "io.containerd.cri.v1.images",
  "io.containerd.nri.v1.nri",
  "io.containerd.podsandbox.controller.v1.podsandbox",
]

[grpc]
  address = "$CTRD_SOCK"

[ttrpc]
  address = "$CTRD_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$PREFIX/containerd-opt"
EOF
  log "starting $CONTAINERD (socket $CTRD_SOCK, log $CTRD_LOG)"
  printf '\n==== %s runner-engine.sh start\n' "$(date -Is)" >>"$CTRD_LOG"
  (cd / && exec env PATH="$(daemon_path)" setsid "$CONTAINERD" --config "$PREFIX/containerd.toml" \
    >>"$CTRD_LOG" 2>&1 </dev/null 9>&-) &
  pid=$!
  echo "$pid" >"$CTRD_PID"
  disown "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + WAIT))
  until ctrd_answers; do
    kill -0 "$pid" 2>/dev/null || die "containerd exited: $(grep -E 'level=(error|fatal)' "$CTRD_LOG" | tail -n 2 | cut -c1-300)"
    ((SECONDS < deadline)) || { stop_pid "$pid" containerd; die "containerd did not answer in ${WAIT}s; see $CTRD_LOG"; }
    sleep 0.2
  done
  log "containerd pid $pid answers ($("$ROOT/usr/bin/ctr" --address "$CTRD_SOCK" version 2>/dev/null | awk '/Version:/ {print $2; exit}'))"
}

# ---------------------------------------------------------------------------------------------
# Step 6: dockerd 28.5.
start_dockerd() {
  local pid
  pid="$(pid_alive "$DOCKERD_PID" "$DOCKERD")"
  if [[ -n $pid ]]; then
    if wait_for_daemon "$pid"; then log "dockerd already running (ours, pid $pid)"; return 0; fi
    die "our dockerd (pid $pid) does not answer on $SOCK; see $DOCKERD_LOG"
  fi
  rm -f "$DOCKERD_PID"
  mkdir -p "$PREFIX/data" "$RUN_DIR/exec"
  [[ -s $PREFIX/daemon.json ]] || echo '{}' >"$PREFIX/daemon.json"
  local driver
  for driver in $DRIVERS; do
    log "starting $DOCKERD (storage driver $driver, socket $SOCK, bridge $BRIDGE), log $DOCKERD_LOG"
    printf '\n==== %s runner-engine.sh start: storage driver %s\n' "$(date -Is)" "$driver" >>"$DOCKERD_LOG"
    (cd / && exec env PATH="$(daemon_path)" setsid "$DOCKERD" \
      --config-file "$PREFIX/daemon.json" \
      --host "unix://$SOCK" \
      --data-root "$PREFIX/data" \
      --exec-root "$RUN_DIR/exec" \
      --pidfile "$DOCKERD_PID" \
      --containerd "$CTRD_SOCK" \
      --bridge "$BRIDGE" \
      --iptables=false --ip6tables=false --ip-masq=false \
      --storage-driver "$driver" \
      >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&-) &
    pid=$!
    if wait_for_daemon "$pid"; then
      disown "$pid" 2>/dev/null || true
      echo "$pid" >"$DOCKERD_PID"
      log "dockerd pid $pid answers (storage driver $(dock info --format '{{.Driver}}'))"
      return 0
    fi
    if kill -0 "$pid" 2>/dev/null; then
      stop_pid "$pid" dockerd
      rm -f "$DOCKERD_PID"
      die "dockerd did not answer within ${WAIT}s; stopped it; see $DOCKERD_LOG"
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$DOCKERD_PID"
    log "dockerd exited with storage driver $driver: $(grep -E 'level=(error|fatal)|failed' "$DOCKERD_LOG" | tail -n 2 | cut -c1-300)"
  done
  die "dockerd did not start with any of: $DRIVERS; see $DOCKERD_LOG"
}

# ---------------------------------------------------------------------------------------------
# Step 7: the utility image (lib/common.sh's build_utility_image, as for scripts/engine.sh) and a check.
# A docker-driver build with buildx 0.29 (once per daemon data root: the marker lives there).
verify() {
  local server client buildx
  server="$(dock version --format '{{.Server.Version}}')"
  client="$(dock version --format '{{.Client.Version}}')"
  buildx="$(dock buildx version | awk '{print $2}')"
  [[ $server == 28.5.* ]] || die "server version $server, expected 28.5.x"
  [[ $buildx == v0.29.* || $buildx == 0.29.* ]] || die "buildx $buildx, expected 0.29.x"
  local marker="$PREFIX/data/.buildkit-mount-cache-verified"
  if [[ ! -e $marker ]]; then
    log "checking a docker buildx build (docker driver)"
    local tmp
    tmp="$(mktemp -d)"
    CLEANUPS+=("rm -rf '$tmp'")
    printf 'FROM %s\nRUN --mount=type=cache,id=bmc-verify,target=/c echo hi > /c/f && cat /c/f\n' "$UTILITY_IMAGE" >"$tmp/Dockerfile"
    dock buildx build --builder default --progress plain --network none -t bmc-verify:latest "$tmp" >"$tmp/build.log" 2>&1 ||
      { tail -n 20 "$tmp/build.log" >&2; die "docker buildx build failed against $SOCK"; }
    dock image rm bmc-verify:latest >/dev/null 2>&1 || true
    touch "$marker"
  fi
  echo "runner engine: docker client $client, server $server, buildx $buildx, containerd $(dock version --format '{{range .Server.Components}}{{if eq .Name "containerd"}}{{.Version}}{{end}}{{end}}'), storage $(dock info --format '{{.Driver}}'), bridge $BRIDGE $(gateway_ip), socket $SOCK"
}

cmd_start() {
  [[ $EUID -eq 0 ]] || die "start needs root"
  lock_dir "$PREFIX"
  mkdir -p "$RUN_DIR"
  install_base
  fetch_engine
  install_clients
  setup_bridge
  start_containerd
  start_dockerd
  build_utility_image
  verify
  log "ready; to use it: eval \"\$(bash $0 env)\""
}

cmd_stop() {
  [[ -d $PREFIX ]] || { echo "runner engine: not set up ($PREFIX missing)"; return 0; }
  lock_dir "$PREFIX"
  local pid stopped=()
  pid="$(pid_alive "$DOCKERD_PID" "$DOCKERD")"
  if [[ -n $pid ]]; then stop_pid "$pid" dockerd; stopped+=("dockerd $pid"); fi
  rm -f "$DOCKERD_PID"
  pid="$(pid_alive "$CTRD_PID" "$CONTAINERD")"
  if [[ -n $pid ]]; then stop_pid "$pid" containerd; stopped+=("containerd $pid"); fi
  rm -f "$CTRD_PID"
  if [[ -s $BRIDGE_MARK ]] && ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link del "$BRIDGE" && stopped+=("bridge $BRIDGE")
  fi
  rm -f "$BRIDGE_MARK"
  if ((${#stopped[@]})); then echo "runner engine: stopped ${stopped[*]}"; else echo "runner engine: nothing started by runner-engine.sh was running"; fi
}

cmd_status() {
  local pid
  pid="$(pid_alive "$CTRD_PID" "$CONTAINERD")"
  if [[ -n $pid ]]; then echo "containerd: running (pid $pid, socket $CTRD_SOCK, log $CTRD_LOG)"; else echo "containerd: none started by runner-engine.sh"; fi
  pid="$(pid_alive "$DOCKERD_PID" "$DOCKERD")"
  if [[ -n $pid ]]; then echo "dockerd: running (pid $pid, log $DOCKERD_LOG)"; else echo "dockerd: none started by runner-engine.sh"; fi
  if daemon_answers; then
    echo "$SOCK: answers: server $(dock version --format '{{.Server.Version}}'), buildx $(dock buildx version 2>/dev/null | awk '{print $2}'), storage $(dock info --format '{{.Driver}}')"
    if dock image inspect "$UTILITY_IMAGE" >/dev/null 2>&1; then echo "$UTILITY_IMAGE: present"; else echo "$UTILITY_IMAGE: missing"; fi
  else
    echo "$SOCK: no daemon answers"
  fi
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    echo "bridge $BRIDGE: $(ip -4 -o addr show dev "$BRIDGE" | awk '{print $4}' | tr '\n' ' ')"
  else
    echo "bridge $BRIDGE: missing"
  fi
}

cmd_env() {
  printf 'export DOCKER_HOST=%q\n' "unix://$SOCK"
  printf 'export DOCKER_CONFIG=%q\n' "$DOCKER_CONFIG_DIR"
  # shellcheck disable=SC2016 # $PATH expands where the output is eval'd
  printf 'export PATH=%q:"$PATH"\n' "$BIN_DIR"
  printf 'unset DOCKER_CONTEXT\n'
  printf '# bridge gateway (the host, as seen from containers on the default network): %s\n' "$(gateway_ip)"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
*)
  echo "usage: $0 start|stop|status|env" >&2
  exit 2
  ;;
esac
