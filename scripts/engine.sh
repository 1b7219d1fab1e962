#!/usr/bin/env bash
# A local BuildKit engine for integration tests and demos on a Debian 12 machine
# without a container registry (see /work/shared/NOTES.md, "A real BuildKit engine here").
#
#   bash scripts/engine.sh start    install what is missing, start dockerd 26 (once), build the utility image
#   bash scripts/engine.sh status   say what runs
#   bash scripts/engine.sh stop     stop the dockerd this script started (pid file), nothing else
#
# What `start` sets up:
#   - Debian 12 packages docker.io (containerd, runc, tini, the 20.10 client at /usr/bin/docker)
#     and busybox-static; their own dockerd is never started.
#   - Debian 13's docker.io (dockerd 26) and docker-buildx, fetched with a private apt directory and
#     unpacked under $ENGINE_PREFIX/root; the system's apt setup is not touched.
#   - the buildx CLI plugin in /usr/libexec/docker/cli-plugins (both clients look there).
#   - dockerd 26 on /var/run/docker.sock (unless some daemon already answers there).
#   - the image buildkit-mount-cache/utility:busybox (busybox applets only, imported, no registry).
#
# Environment:
#   ENGINE_PREFIX          private prefix (default /opt/buildkit-mount-cache-engine)
#   ENGINE_SUITE           Debian suite to take dockerd/buildx from (default trixie)
#   ENGINE_STORAGE_DRIVER  storage drivers to try in order (default "overlay2 vfs")
#   ENGINE_WAIT            seconds to wait for dockerd to answer (default 60)
set -euo pipefail
LOG_TAG=engine
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

readonly PREFIX="${ENGINE_PREFIX:-/opt/buildkit-mount-cache-engine}"
readonly SUITE="${ENGINE_SUITE:-trixie}"
readonly DRIVERS="${ENGINE_STORAGE_DRIVER:-overlay2 vfs}"
readonly WAIT="${ENGINE_WAIT:-60}"

readonly ROOT="$PREFIX/root"
readonly DOCKERD="$ROOT/usr/sbin/dockerd"
readonly BUILDX_SRC="$ROOT/usr/libexec/docker/cli-plugins/docker-buildx"
readonly PLUGIN_DIR=/usr/libexec/docker/cli-plugins
readonly PIDFILE="$PREFIX/dockerd.pid"
readonly LOGFILE="$PREFIX/dockerd.log"
readonly SOCK=/var/run/docker.sock
readonly UTILITY_IMAGE=buildkit-mount-cache/utility:busybox
# The Debian 12 client: installed by step 1, talks to any API version, ignores DOCKER_HOST/contexts here.
readonly CLIENT=/usr/bin/docker

dock() { "$CLIENT" -H "unix://$SOCK" "$@"; }
daemon_answers() { [[ -x $CLIENT ]] && timeout 10 "$CLIENT" -H "unix://$SOCK" info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

# The pid in our pid file, if that process is still our dockerd; empty otherwise.
our_pid() { pid_alive "$PIDFILE" "$DOCKERD"; }

# ---------------------------------------------------------------------------------------------
# Step 1: Debian 12 packages (containerd, runc, tini, 20.10 client) and busybox-static.
install_base() {
  local missing=()
  [[ -x /usr/bin/docker ]] || missing+=(/usr/bin/docker)
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ "$(dpkg-query -W -f '${Status}' busybox-static 2>/dev/null || true)" == "install ok installed" ]] ||
    missing+=(busybox-static)
  ((${#missing[@]})) || return 0
  log "installing docker.io busybox-static (missing: ${missing[*]})"

  # No package may start a service (Debian 12's dockerd must not own the socket): without_services.
  local before
  before="$(daemon_pids)"
  local pkgs=(docker.io busybox-static)
  # Lists are refreshed only when they do not know the packages (or the install fails below).
  local policy_out
  policy_out="$(apt-cache policy docker.io busybox-static 2>/dev/null || true)"
  if [[ "$(grep -c 'Candidate: [0-9]' <<<"$policy_out" || true)" -lt 2 ]]; then
    apt-get update -q
  fi
  if ! without_services apt-get install -y -q --no-install-recommends "${pkgs[@]}"; then
    log "install failed; refreshing package lists once"
    apt-get update -q
    without_services apt-get install -y -q --no-install-recommends "${pkgs[@]}"
  fi

  # Belt and braces: anything the install started anyway gets stopped (it was started by us).
  if [[ -d /run/systemd/system ]]; then
    systemctl stop docker.socket docker.service containerd.service 2>/dev/null || true
    systemctl disable docker.socket docker.service containerd.service 2>/dev/null || true
  fi
  local pid
  for pid in $(comm -13 <(echo "$before") <(daemon_pids)); do
    log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) pid $pid started by the package install"
    kill "$pid" 2>/dev/null || true
  done
}

# ---------------------------------------------------------------------------------------------
daemon_pids() { { pgrep -x dockerd || true; pgrep -x containerd || true; } | sort; }

# ---------------------------------------------------------------------------------------------
# Step 2: Debian 13's docker.io and docker-buildx, through a private apt directory.
fetch_engine() {
  [[ -x $DOCKERD && -x $BUILDX_SRC ]] && return 0
  local debs="$PREFIX/debs"
  log "fetching docker.io and docker-buildx from $SUITE (private apt dir $PREFIX/apt)"
  # The system's sources with its codename (and codename-updates/-security) mapped to $SUITE.
  papt_init "$PREFIX/apt" "$SUITE"
  papt_update force
  mkdir -p "$debs"
  rm -f "$debs"/*.deb
  (cd "$debs" && apt-get "${PAPT_OPTS[@]}" download docker.io docker-buildx)

  # Unpack next to the final place and rename, so a half-done unpack never counts as done.
  rm -rf "$ROOT.new"
  mkdir -p "$ROOT.new"
  local deb
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$ROOT.new"; done
  [[ -x $ROOT.new/usr/sbin/dockerd ]] || die "no usr/sbin/dockerd in the $SUITE docker.io package"
  # usr/bin/docker-init is a relative link to tini-static from the tini package: point it at the system's.
  if [[ -L $ROOT.new/usr/bin/docker-init && ! -e $ROOT.new/usr/bin/docker-init && -x /usr/bin/tini-static ]]; then
    ln -sfn /usr/bin/tini-static "$ROOT.new/usr/bin/docker-init"
  fi
  rm -rf "$ROOT"
  mv "$ROOT.new" "$ROOT"
  log "unpacked $(cd "$debs" && echo *.deb) into $ROOT"
}

# ---------------------------------------------------------------------------------------------
# Step 3: the buildx CLI plugin where both clients look.
install_buildx() {
  cmp -s "$BUILDX_SRC" "$PLUGIN_DIR/docker-buildx" && return 0
  log "installing $PLUGIN_DIR/docker-buildx"
  install -D -m 0755 "$BUILDX_SRC" "$PLUGIN_DIR/docker-buildx.new"
  mv -f "$PLUGIN_DIR/docker-buildx.new" "$PLUGIN_DIR/docker-buildx"
}

# ---------------------------------------------------------------------------------------------
# Step 4: dockerd 26 on /var/run/docker.sock, unless a daemon already answers there.
start_dockerd() {
  local pid
  pid="$(our_pid)"
  if daemon_answers; then
    if [[ -n $pid ]]; then log "dockerd already running (ours, pid $pid)"; else log "a docker daemon already answers on $SOCK (not ours): using it"; fi
    return 0
  fi
  if [[ -n $pid ]]; then
    log "our dockerd (pid $pid) runs but does not answer; waiting for it"
    wait_for_daemon "$pid" && return 0
    die "dockerd pid $pid does not answer on $SOCK; see $LOGFILE"
  fi
  rm -f "$PIDFILE"

  # dockerd looks up docker-proxy and docker-init on PATH: prefer the ones from its own package.
  local path="$ROOT/usr/sbin:$ROOT/usr/libexec/docker:$ROOT/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  local driver
  for driver in $DRIVERS; do
    log "starting $DOCKERD (storage driver $driver), log $LOGFILE"
    printf '\n==== %s engine.sh start: storage driver %s\n' "$(date -Is)" "$driver" >>"$LOGFILE"
    # No job control in a script: the background child is not a group leader, so setsid does not
    # fork and $! is dockerd's pid. fd 9 (our lock) must not leak into the daemon.
    (cd / && exec env PATH="$path" setsid "$DOCKERD" --storage-driver "$driver" \
      >>"$LOGFILE" 2>&1 </dev/null 9>&-) &
    pid=$!
    echo "$pid" >"$PIDFILE"
    if wait_for_daemon "$pid"; then
      disown "$pid" 2>/dev/null || true
      log "dockerd pid $pid answers (storage driver $(dock info --format '{{.Driver}}'))"
      return 0
    fi
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      die "dockerd did not answer within ${WAIT}s; stopped it; see $LOGFILE"
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    log "dockerd exited with storage driver $driver: $(grep -E 'level=(error|fatal)|failed' "$LOGFILE" | tail -n 2 | cut -c1-300)"
  done
  die "dockerd did not start with any of: $DRIVERS; see $LOGFILE"
}

# Step 5: the utility image (lib/common.sh's build_utility_image).

# ---------------------------------------------------------------------------------------------
# Step 5: the utility image: busybox and its applets, /tmp, nothing else.
build_utility_image() {
  dock image inspect "$UTILITY_IMAGE" >/dev/null 2>&1 && return 0
  log "building $UTILITY_IMAGE"
  local tmp
  tmp="$(mktemp -d)"
  CLEANUPS+=("rm -rf '$tmp'")
  mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp"
  chmod 1777 "$tmp/rootfs/tmp"
  cp /bin/busybox "$tmp/rootfs/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$tmp/rootfs/bin/$applet"
  done
  tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -c . |
    dock import --message "buildkit-mount-cache utility image (busybox-static)" - "$UTILITY_IMAGE" >/dev/null
}

# ---------------------------------------------------------------------------------------------
summary() {
  local server buildx image driver who pid
  server="$(dock version --format '{{.Server.Version}}')"
  driver="$(dock info --format '{{.Driver}}')"
  buildx="$(DOCKER_HOST="unix://$SOCK" docker buildx version 2>/dev/null | awk '{print $2}' || true)"
  image="$(dock image inspect --format '{{.Id}}' "$UTILITY_IMAGE")"
  pid="$(our_pid)"
  if [[ -n $pid ]]; then who="ours, pid $pid"; else who="not started by engine.sh"; fi
  echo "engine: dockerd $server ($who, storage $driver), buildx ${buildx:-missing}, $UTILITY_IMAGE ${image#sha256:}"
}

cmd_start() {
  [[ $EUID -eq 0 ]] || die "start needs root"
  lock_dir "$PREFIX"
  install_base
  fetch_engine
  install_buildx
  start_dockerd
  build_utility_image
  summary
  log "ready"
}

cmd_stop() {
  [[ -d $PREFIX ]] || { echo "engine: not set up ($PREFIX missing)"; return 0; }
  lock_dir "$PREFIX"
  local pid
  pid="$(our_pid)"
  if [[ -z $pid ]]; then
    rm -f "$PIDFILE"
    echo "engine: no dockerd started by engine.sh is running"
    return 0
  fi
  stop_pid "$pid" dockerd
  rm -f "$PIDFILE"
  echo "engine: stopped dockerd pid $pid"
}

cmd_status() {
  local pid
  pid="$(our_pid)"
  if [[ -n $pid ]]; then
    echo "dockerd: running, started by engine.sh (pid $pid, $DOCKERD, log $LOGFILE)"
  elif [[ -s $PIDFILE ]]; then
    echo "dockerd: stale pid file $PIDFILE ($(<"$PIDFILE") is not our dockerd)"
  else
    echo "dockerd: none started by engine.sh"
  fi
  if daemon_answers; then
    echo "$SOCK: answers: server $(dock version --format '{{.Server.Version}}'), storage $(dock info --format '{{.Driver}}'), daemon pid $(cat /var/run/docker.pid 2>/dev/null || echo '?')"
    if dock image inspect "$UTILITY_IMAGE" >/dev/null 2>&1; then echo "$UTILITY_IMAGE: present"; else echo "$UTILITY_IMAGE: missing"; fi
  else
    echo "$SOCK: no daemon answers"
  fi
  if [[ -x $PLUGIN_DIR/docker-buildx ]]; then
    echo "buildx plugin: $("$PLUGIN_DIR/docker-buildx" version 2>/dev/null | awk '{print $2}')"
  else
    echo "buildx plugin: missing"
  fi
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
  echo "usage: $0 start|stop|status" >&2
  exit 2
  ;;
esac
