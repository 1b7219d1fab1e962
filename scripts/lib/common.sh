# shellcheck shell=bash
# Shared helpers for the provisioning scripts in scripts/ (sourced, not run).
# The caller sets LOG_TAG before sourcing; everything here follows scripts/engine.sh's style.
#
#   log / die              timestamped lines on stderr
#   CLEANUPS+=("cmd")      run at exit, newest first
#   lock_dir DIR           take DIR/.lock on fd 9 (held until the script exits)
#   papt_init DIR SUITE [TYPES]
#                          a private apt directory for Debian SUITE, derived from the system's
#                          sources (never touching them); sets the array PAPT_OPTS for apt-get
#   papt_update            apt-get update with PAPT_OPTS (once per hour at most)
#   pid_alive PIDFILE EXE  prints the pid from PIDFILE if that process still runs EXE
#   stop_pid PID NAME      TERM, wait up to 60 s, then KILL
#   without_services CMD   run CMD with a policy-rc.d that keeps packages from starting services
#   wait_for_daemon PID    wait up to $WAIT s for the caller's daemon_answers while PID lives
#   build_utility_image    import $UTILITY_IMAGE (busybox and its applets) with the caller's dock

: "${LOG_TAG:=script}"
readonly T0="${T0:-$EPOCHREALTIME}"
log() { printf '[%s %6.1fs] %s\n' "$LOG_TAG" "$(awk -v a="$EPOCHREALTIME" -v b="$T0" 'BEGIN { printf "%.1f", a - b }')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

CLEANUPS=()
on_exit() {
  local i
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" || true; done
}
trap on_exit EXIT

lock_dir() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock 9
}

# ---------------------------------------------------------------------------------------------
# Private apt directory for another Debian suite.
# trixie-like suites keep the system's SUITE-updates / SUITE-security entries (mapped); sid and
# unstable/experimental have neither, so those entries are dropped there.
PAPT_OPTS=()
PAPT_DIR=""
papt_init() {
  local dir="$1" suite="$2" types="${3:-deb}" codename src
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release"
  PAPT_DIR="$dir"
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d.new" "$dir/preferences.d"
  [[ -e $dir/status ]] || : >"$dir/status"
  local rolling=""
  case "$suite" in sid | unstable | experimental) rolling=1 ;; esac

  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    src=/etc/apt/sources.list.d/debian.sources
    # deb822: rewrite Types and Suites per stanza; drop a stanza left without suites.
    awk -v old="$codename" -v new="$suite" -v types="$types" -v rolling="$rolling" '
      function flush() {
        if (n && keep) { for (i = 1; i <= n; i++) print buf[i]; print "" }
        n = 0; keep = 1
      }
      BEGIN { n = 0; keep = 1 }
      /^[[:space:]]*$/ { flush(); next }
      /^#/ { next }
      /^Types:/ { buf[++n] = "Types: " types; next }
      /^Suites:/ {
        out = ""
        for (i = 2; i <= NF; i++) {
          s = $i
          if (s == old) s = new
          else if (index(s, old "-") == 1) { if (rolling) continue; s = new substr(s, length(old) + 1) }
          out = out " " s
        }
        if (out == "") keep = 0
        buf[++n] = "Suites:" out; next
      }
      { buf[++n] = $0 }
      END { flush() }
    ' "$src" >"$dir/sources.list.d.new/debian.sources"
  elif [[ -f /etc/apt/sources.list ]]; then
    src=/etc/apt/sources.list
    local t line=()
    : >"$dir/sources.list.d.new/debian.list"
    while read -r -a line; do
      [[ ${line[0]:-} == deb ]] || continue
      local i s=""
      for i in "${!line[@]}"; do
        [[ ${line[i]} == "$codename" || ${line[i]} == "$codename"-* ]] && s="${line[i]}"
      done
      [[ -n $s ]] || continue
      if [[ $s == "$codename" ]]; then s="$suite"; elif [[ -n $rolling ]]; then continue; else s="$suite${s#"$codename"}"; fi
      for t in $types; do
        local out=("$t") seen=""
        for i in "${!line[@]}"; do
          ((i == 0)) && continue
          if [[ -z $seen && (${line[i]} == "$codename" || ${line[i]} == "$codename"-*) ]]; then out+=("$s"); seen=1; else out+=("${line[i]}"); fi
        done
        echo "${out[*]}" >>"$dir/sources.list.d.new/debian.list"
      done
    done <"$src"
  else
    die "neither /etc/apt/sources.list.d/debian.sources nor /etc/apt/sources.list"
  fi
  grep -qw "$suite" "$dir"/sources.list.d.new/* || die "could not derive $suite sources from $src"
  # Changed sources invalidate the lists.
  if ! diff -qr "$dir/sources.list.d.new" "$dir/sources.list.d" >/dev/null 2>&1; then
    rm -rf "$dir/sources.list.d" "$dir/lists"
    mkdir -p "$dir/lists/partial"
    mv "$dir/sources.list.d.new" "$dir/sources.list.d"
  else
    rm -rf "$dir/sources.list.d.new"
  fi
  PAPT_OPTS=(
    -o "Dir::State::Lists=$dir/lists"
    -o "Dir::State::status=$dir/status"
    -o "Dir::State::extended_states=$dir/extended_states"
    -o "Dir::Cache=$dir/cache"
    -o "Dir::Etc::sourcelist=/dev/null"
    -o "Dir::Etc::sourceparts=$dir/sources.list.d"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=$dir/preferences.d"
    -o "APT::Sandbox::User=root"
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
  )
}

papt_update() {
  local stamp="$PAPT_DIR/lists/.updated"
  if [[ -e $stamp && -n "$(find "$stamp" -mmin -60 2>/dev/null)" && "${1:-}" != force ]]; then return 0; fi
  log "apt-get update (private lists in $PAPT_DIR)"
  apt-get "${PAPT_OPTS[@]}" update -q >&2
  touch "$stamp"
}

# The candidate version of a package in the private lists.
# (awk reads to the end: an early exit would SIGPIPE apt-cache, and pipefail would fail the caller)
papt_version() { apt-cache "${PAPT_OPTS[@]}" show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ && !v { v = $2 } END { print v }'; }

# ---------------------------------------------------------------------------------------------
pid_alive() {
  local pidfile="$1" exe="$2" pid
  [[ -s $pidfile ]] || return 0
  pid="$(<"$pidfile")"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" == "$(readlink -f "$exe")" ]] && echo "$pid"
  return 0
}

stop_pid() {
  local pid="$1" name="$2" deadline
  log "stopping $name pid $pid"
  kill -TERM "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name pid $pid still running after 60s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
}

# Run "$@" (an apt-get install) so that no package starts a service; restore policy-rc.d after.
without_services() {
  local policy=/usr/sbin/policy-rc.d saved rc=0
  saved="$(mktemp)"
  if [[ -e $policy ]]; then cp -a "$policy" "$saved"; else rm -f "$saved"; fi
  printf '#!/bin/sh\n# written by buildkit-mount-cache scripts/ during apt-get install\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  DEBIAN_FRONTEND=noninteractive "$@" || rc=$?
  if [[ -e $saved ]]; then mv -f "$saved" "$policy"; else rm -f "$policy"; fi
  return "$rc"
}

# Install Debian packages of this system (its own apt setup) if dpkg does not have them.
apt_install_missing() {
  local p missing=()
  for p in "$@"; do
    [[ "$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  if ! without_services apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    log "install failed; refreshing package lists once"
    apt-get update -q >&2
    without_services apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

# A docker CLI for -H use against any of our daemons: Debian 12's 20.10 client (scripts/engine.sh),
# else the runner engine's 28.5 client (scripts/runner-engine.sh), else whatever is on PATH.
docker_client() {
  local c
  for c in /usr/bin/docker "${RUNNER_PREFIX:-/opt/buildkit-mount-cache-runner}/bin/docker" /usr/local/bin/docker; do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done
  command -v docker || die "no docker client (run scripts/engine.sh or scripts/runner-engine.sh start first)"
}

# ---------------------------------------------------------------------------------------------
# For the engine scripts: the caller defines daemon_answers, dock, WAIT and UTILITY_IMAGE.
wait_for_daemon() {
  local pid="$1" deadline=$((SECONDS + WAIT))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    daemon_answers && return 0
    sleep 0.2
  done
  return 1
}

# The utility image: busybox and its applets, /tmp, nothing else (imported: no registry needed).
build_utility_image() {
  dock image inspect "$UTILITY_IMAGE" >/dev/null 2>&1 && return 0
  log "building $UTILITY_IMAGE"
  local tmp applet
  tmp="$(mktemp -d)"
  CLEANUPS+=("rm -rf '$tmp'")
  mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp"
  chmod 1777 "$tmp/rootfs/tmp"
  cp /bin/busybox "$tmp/rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox ]] || ln -s busybox "$tmp/rootfs/bin/$applet"
  done
  tar --numeric-owner --owner=0 --group=0 -C "$tmp/rootfs" -c . |
    dock import --message "buildkit-mount-cache utility image (busybox-static)" - "$UTILITY_IMAGE" >/dev/null
}
