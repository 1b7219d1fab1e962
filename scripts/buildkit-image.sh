#!/usr/bin/env bash
# A BuildKit image for docker-container builders, built here from Debian sources (no container
# registry needed; see /work/shared/NOTES.md, "docker-container builders and runner-like engines").
#
#   bash scripts/buildkit-image.sh [build]   compile (once per source version) and load the image
#   bash scripts/buildkit-image.sh binaries  only compile; prints the directory holding the binaries
#   bash scripts/buildkit-image.sh status    say what is cached and whether the daemon has the image
#
# What `build` does:
#   1. Debian 13's docker.io SOURCE package (newest of trixie, trixie-updates, trixie-security)
#      through a private apt directory (deb-src lines derived from the system's sources); its
#      orig-buildkit component is BuildKit v0.13.2.
#   2. Debian 13's Go (the golang-1.NN-go that trixie's golang-go depends on) and the golang-*-dev
#      packages BuildKit needs, `apt-get download` + `dpkg-deb -x` into a private prefix.
#   3. buildkitd + buildctl in GOPATH mode (GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local
#      CGO_ENABLED=0, tags osusergo netgo static_build seccomp), cached in
#      $BUILDKIT_PREFIX/<source version>/bin; a second run compiles nothing.
#   4. A rootfs FROM scratch: buildkitd, buildctl, Debian 12's runc (+ the libraries ldd names),
#      busybox-static with its applets; `docker import --change 'ENTRYPOINT ["buildkitd"]'`
#      as $BUILDKIT_IMAGE (default moby/buildkit:buildx-stable-1, what `docker buildx create
#      --driver docker-container` runs: it logs "pulling failed, using local image").
#
# Options / environment:
#   --host URL | DOCKER_HOST   daemon to load the image into (default unix:///var/run/docker.sock);
#                              e.g. --host unix:///run/buildkit-mount-cache-runner/docker.sock
#   --push NAME                also push it to the local registry (scripts/registry.sh) as NAME
#   BUILDKIT_PREFIX            cache dir (default /opt/buildkit-mount-cache-buildkit)
#   BUILDKIT_IMAGE             tag (default moby/buildkit:buildx-stable-1)
#   BUILDKIT_REFRESH=1         refresh the private package lists (else only when they are missing)
#   BUILDKIT_PACKAGES          file with the golang-*-dev list (default: the list in this script)
set -euo pipefail
LOG_TAG=buildkit-image
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

readonly PREFIX="${BUILDKIT_PREFIX:-/opt/buildkit-mount-cache-buildkit}"
readonly IMAGE="${BUILDKIT_IMAGE:-moby/buildkit:buildx-stable-1}"
HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
PUSH_NAME=""

# The golang-*-dev packages BuildKit v0.13.2 imports that Debian 13 packages (the rest comes from
# BuildKit's partial vendor/ and the docker engine component). Go itself is added from golang-go's
# dependency.
DEV_PACKAGES=(
  golang-github-agext-levenshtein-dev golang-github-appc-cni-dev golang-github-armon-circbuf-dev
  golang-github-aws-aws-sdk-go-v2-dev golang-github-aws-smithy-go-dev golang-github-beorn7-perks-dev
  golang-github-cenkalti-backoff-dev golang-github-cespare-xxhash-dev golang-github-containerd-console-dev
  golang-github-containerd-containerd-dev golang-github-containerd-continuity-dev
  golang-github-containerd-errdefs-dev golang-github-containerd-fifo-dev golang-github-containerd-go-cni-dev
  golang-github-containerd-go-runc-dev golang-github-containerd-log-dev golang-github-containerd-platforms-dev
  golang-github-containerd-ttrpc-dev golang-github-containerd-typeurl-dev golang-github-coreos-bbolt-dev
  golang-github-coreos-go-systemd-dev golang-github-dimchansky-utfbom-dev
  golang-github-distribution-reference-dev golang-github-docker-docker-credential-helpers-dev
  golang-github-docker-go-connections-dev golang-github-docker-go-events-dev golang-github-docker-go-metrics-dev
  golang-github-docker-go-units-dev golang-github-felixge-httpsnoop-dev golang-github-go-logr-logr-dev
  golang-github-go-logr-stdr-dev golang-github-gofrs-flock-dev golang-github-gogo-googleapis-dev
  golang-github-gogo-protobuf-dev golang-github-golang-groupcache-dev golang-github-golang-jwt-jwt-dev
  golang-github-golang-protobuf-1-5-dev golang-github-google-go-cmp-dev golang-github-google-shlex-dev
  golang-github-google-uuid-dev golang-github-grpc-ecosystem-grpc-gateway-dev golang-github-hashicorp-errwrap-dev
  golang-github-hashicorp-go-immutable-radix-dev golang-github-hashicorp-go-multierror-dev
  golang-github-hashicorp-golang-lru-dev golang-github-in-toto-in-toto-golang-dev
  golang-github-klauspost-compress-dev golang-github-mitchellh-hashstructure-dev
  golang-github-moby-docker-image-spec-dev golang-github-moby-locker-dev golang-github-moby-patternmatcher-dev
  golang-github-moby-sys-dev golang-github-morikuni-aec-dev golang-github-munnerz-goautoneg-dev
  golang-github-opencontainers-go-digest-dev golang-github-opencontainers-image-spec-dev
  golang-github-opencontainers-selinux-dev golang-github-opencontainers-specs-dev
  golang-github-pelletier-go-toml-dev golang-github-pkg-errors-dev golang-github-prometheus-client-golang-dev
  golang-github-prometheus-client-model-dev golang-github-prometheus-common-dev
  golang-github-prometheus-procfs-dev golang-github-secure-systems-lab-go-securesystemslib-dev
  golang-github-shibumi-go-pathspec-dev golang-github-sirupsen-logrus-dev golang-github-tonistiigi-units-dev
  golang-github-vbatts-tar-split-dev golang-github-vishvananda-netlink-dev golang-github-vishvananda-netns-dev
  golang-golang-x-crypto-dev golang-golang-x-net-dev golang-golang-x-sync-dev golang-golang-x-sys-dev
  golang-golang-x-text-dev golang-golang-x-time-dev golang-google-genproto-dev golang-google-grpc-dev
  golang-google-protobuf-dev golang-opentelemetry-contrib-dev golang-opentelemetry-otel-dev
  golang-opentelemetry-proto-dev
)

dock() { "$(docker_client)" -H "$HOST" "$@"; }

# ---------------------------------------------------------------------------------------------
# The docker.io source version in trixie (+updates, +security): the highest one the lists know.
SRC_VERSION=""
resolve_version() {
  papt_init "$PREFIX/apt" trixie "deb deb-src"
  if [[ ! -e $PAPT_DIR/lists/.updated || ${BUILDKIT_REFRESH:-} == 1 ]]; then papt_update force; fi
  SRC_VERSION="$(apt-cache "${PAPT_OPTS[@]}" showsrc docker.io 2>/dev/null | awk '/^Version:/ { print $2 }' |
    sort -u | while read -r v; do echo "$v"; done | sort_versions | tail -n 1)"
  [[ -n $SRC_VERSION ]] || die "no docker.io source package in the trixie lists ($PAPT_DIR)"
}
sort_versions() {
  # dpkg order (insertion sort; a handful of versions).
  local vs=() v i j t
  while read -r v; do vs+=("$v"); done
  for ((i = 1; i < ${#vs[@]}; i++)); do
    for ((j = i; j > 0; j--)); do
      if dpkg --compare-versions "${vs[j - 1]}" gt "${vs[j]}"; then t="${vs[j]}"; vs[j]="${vs[j - 1]}"; vs[j - 1]="$t"; else break; fi
    done
  done
  ((${#vs[@]})) && printf '%s\n' "${vs[@]}"
  return 0
}

# ---------------------------------------------------------------------------------------------
# Step 1: the source package, unpacked (patches applied) once per version.
fetch_source() {
  local dir="$PREFIX/$SRC_VERSION/src"
  [[ -e $dir/.done ]] && return 0
  apt_install_missing dpkg-dev xz-utils
  log "apt-get source docker.io=$SRC_VERSION"
  rm -rf "$dir"
  mkdir -p "$dir/dl"
  # The same version can be listed by trixie (point release) and trixie-security while only one
  # mirror serves its .dsc: try the version, then each suite by name (files already fetched stay).
  local dsc="$dir/dl/docker.io_${SRC_VERSION#*:}.dsc" suite
  for suite in "=$SRC_VERSION" /trixie-security /trixie-updates /trixie; do
    [[ -s $dsc ]] && break
    (cd "$dir/dl" && apt-get "${PAPT_OPTS[@]}" source --download-only -q "docker.io$suite" >&2) ||
      log "apt-get source docker.io$suite failed; trying the next suite"
  done
  [[ -s $dsc ]] || die "could not fetch $(basename "$dsc")"
  (cd "$dir" && dpkg-source --no-check -x "$dsc" tree >&2)
  [[ -f $dir/tree/buildkit/cmd/buildkitd/main.go ]] || die "no buildkit/cmd/buildkitd in $dsc"
  grep -q 'github.com/moby/buildkit' "$dir/tree/buildkit/go.mod" || die "buildkit component is not github.com/moby/buildkit"
  touch "$dir/.done"
}

# ---------------------------------------------------------------------------------------------
# Step 2: Go and the golang-*-dev packages, unpacked into a private prefix.
GOROOT_DIR=""
fetch_go() {
  local root="$PREFIX/$SRC_VERSION/gotree" debs="$PREFIX/debs"
  if [[ -e $root/.done ]]; then GOROOT_DIR="$(<"$root/.done")"; return 0; fi
  local godep pkgs
  godep="$(apt-cache "${PAPT_OPTS[@]}" show --no-all-versions golang-go |
    awk '/^Depends:/ && !d { if (match($0, /golang-1\.[0-9]+-go/)) d = substr($0, RSTART, RLENGTH) } END { print d }')"
  [[ -n $godep ]] || die "cannot tell which golang-1.NN-go trixie's golang-go depends on"
  pkgs=("$godep" "${godep%-go}-src")
  if [[ -n ${BUILDKIT_PACKAGES:-} ]]; then
    mapfile -t DEV_PACKAGES < <(grep -v '^golang-1\.' "$BUILDKIT_PACKAGES" | grep .)
  fi
  pkgs+=("${DEV_PACKAGES[@]}")
  log "apt-get download ${#pkgs[@]} packages ($godep and ${#DEV_PACKAGES[@]} golang-*-dev) into $debs"
  mkdir -p "$debs"
  local p deb need=()
  for p in "${pkgs[@]}"; do
    compgen -G "$debs/${p}_*.deb" >/dev/null || need+=("$p")
  done
  if ((${#need[@]})); then (cd "$debs" && apt-get "${PAPT_OPTS[@]}" download -q "${need[@]}" >&2); fi
  rm -rf "$root.new"
  mkdir -p "$root.new"
  for p in "${pkgs[@]}"; do
    deb="$(ls -t "$debs/${p}_"*.deb | awk 'NR == 1')"
    dpkg-deb -x "$deb" "$root.new"
  done
  # Absolute links (…-dev packages link into each other, Go's tree into /usr/share/go-1.NN) must
  # point into the prefix.
  local l t
  while IFS= read -r -d '' l; do
    t="$(readlink "$l")"
    [[ $t == /* ]] && ln -sfn "$root${t}" "$l"
  done < <(find "$root.new" -type l -print0)
  # …those links were made for $root, which is where the tree goes now.
  rm -rf "$root"
  mv "$root.new" "$root"
  GOROOT_DIR="$root/usr/lib/go-${godep#golang-}"; GOROOT_DIR="${GOROOT_DIR%-go}"
  [[ -x $GOROOT_DIR/bin/go ]] || die "no $GOROOT_DIR/bin/go"
  echo "$GOROOT_DIR" >"$root/.done"
  log "go: $("$GOROOT_DIR/bin/go" version 2>&1 || true)"
}

# ---------------------------------------------------------------------------------------------
# Step 3: buildkitd + buildctl.
BIN_DIR=""
compile() {
  BIN_DIR="$PREFIX/$SRC_VERSION/bin"
  if [[ -x $BIN_DIR/buildkitd && -x $BIN_DIR/buildctl ]]; then return 0; fi
  fetch_source
  fetch_go
  local work="$PREFIX/$SRC_VERSION/build" tree="$PREFIX/$SRC_VERSION/src/tree"
  rm -rf "$work"
  mkdir -p "$work/gopath/src/github.com/moby" "$work/gopath/src/github.com/docker" "$work/cache" "$work/tmp"
  # Copies (not links): GOPATH mode resolves the working directory's real path.
  cp -a "$tree/buildkit" "$work/gopath/src/github.com/moby/buildkit"
  # The engine component: engine/ in Debian's layout (else the top of the tree).
  if [[ -d $tree/engine/pkg ]]; then
    cp -a "$tree/engine" "$work/gopath/src/github.com/docker/docker"
  else
    mkdir -p "$work/gopath/src/github.com/docker/docker"
    tar -C "$tree" --exclude=./buildkit --exclude=./cli --exclude=./debian -c . | tar -C "$work/gopath/src/github.com/docker/docker" -x
  fi
  [[ -d $work/gopath/src/github.com/docker/docker/pkg/idtools ]] || die "no docker engine component in $tree"
  local gotree="$PREFIX/$SRC_VERSION/gotree"
  local version
  version="$(sed -n 's/^Version:[[:space:]]*//p' "$tree/buildkit/.git-version" 2>/dev/null || true)"
  [[ -n $version ]] || version="v0.13.2+debian-$SRC_VERSION"
  log "go build ./cmd/buildkitd ./cmd/buildctl (GOPATH mode; log $work/build.log)"
  local t1="$SECONDS"
  (
    cd "$work/gopath/src/github.com/moby/buildkit"
    export GOROOT="$GOROOT_DIR" GOPATH="$work/gopath:$gotree/usr/share/gocode" GO111MODULE=off GOPROXY=off \
      GOTOOLCHAIN=local CGO_ENABLED=0 GOCACHE="$work/cache" GOTMPDIR="$work/tmp" \
      PATH="$GOROOT_DIR/bin:$PATH"
    mkdir -p "$work/out"
    "$GOROOT_DIR/bin/go" build -trimpath -tags 'osusergo netgo static_build seccomp' \
      -ldflags "-s -w -X github.com/moby/buildkit/version.Version=${version} -X github.com/moby/buildkit/version.Revision=debian-${SRC_VERSION}" \
      -o "$work/out/" ./cmd/buildkitd ./cmd/buildctl
  ) >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; die "go build failed; see $work/build.log"; }
  if command -v file >/dev/null && ! file "$work/out/buildkitd" | grep -q 'statically linked'; then
    log "warning: buildkitd is not statically linked"
  fi
  mkdir -p "$BIN_DIR.new"
  mv "$work/out/buildkitd" "$work/out/buildctl" "$BIN_DIR.new/"
  rm -rf "$BIN_DIR"
  mv "$BIN_DIR.new" "$BIN_DIR"
  rm -rf "$work" # the GOPATH copy and build cache (the sources and Go stay for a rebuild)
  log "compiled in $((SECONDS - t1))s: $("$BIN_DIR/buildkitd" --version 2>/dev/null)"
}

# ---------------------------------------------------------------------------------------------
# Step 4: the image's root file system, as a tar (cached per version and runc/busybox build).
ROOTFS_TAR=""
make_rootfs() {
  apt_install_missing runc busybox-static
  local key
  key="$(cat "$BIN_DIR/buildkitd" "$BIN_DIR/buildctl" /usr/sbin/runc /bin/busybox | sha256sum | cut -c1-16)"
  ROOTFS_TAR="$PREFIX/$SRC_VERSION/rootfs-$key.tar"
  [[ -s $ROOTFS_TAR ]] && return 0
  log "assembling the rootfs ($ROOTFS_TAR)"
  local tmp
  tmp="$(mktemp -d)"
  CLEANUPS+=("rm -rf '$tmp'")
  local r="$tmp/rootfs"
  mkdir -p "$r/usr/bin" "$r/usr/sbin" "$r/bin" "$r/etc/buildkit" "$r/var/lib/buildkit" "$r/run" "$r/tmp" "$r/root" "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  install -m 0755 "$BIN_DIR/buildkitd" "$BIN_DIR/buildctl" "$r/usr/bin/"
  install -m 0755 /usr/sbin/runc "$r/usr/sbin/runc"
  ln -s ../sbin/runc "$r/usr/bin/runc"
  local lib
  for lib in $(ldd /usr/sbin/runc | grep -oE '/[^ ]+' | sort -u); do
    mkdir -p "$r$(dirname "$lib")"
    cp -L "$lib" "$r$lib"
  done
  # Debian 12 is merged-/usr: /lib64 and /lib are links there; keep the loader where ldd said.
  install -m 0755 /bin/busybox "$r/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ $applet == busybox || -e $r/bin/$applet ]] || ln -s busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
  tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$ROOTFS_TAR.new" .
  mv "$ROOTFS_TAR.new" "$ROOTFS_TAR"
}

# The image's comment names what it was made from: an image with that comment is up to date.
image_comment() { echo "buildkit-mount-cache buildkit $SRC_VERSION $(basename "$ROOTFS_TAR" .tar)"; }

load_image() {
  local want have
  want="$(image_comment)"
  have="$(dock image inspect --format '{{.Comment}}' "$IMAGE" 2>/dev/null || true)"
  if [[ $have == "$want" ]]; then
    log "$IMAGE is up to date on $HOST"
  else
    log "importing $IMAGE into $HOST"
    dock import --message "$want" \
      --change 'ENTRYPOINT ["buildkitd"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'VOLUME /var/lib/buildkit' \
      "$ROOTFS_TAR" "$IMAGE" >/dev/null
  fi
  # Smoke test: the binaries run in the image.
  dock run --rm --entrypoint buildctl "$IMAGE" --version >&2
}

push_image() {
  [[ -n $PUSH_NAME ]] || return 0
  DOCKER_HOST="$HOST" bash "$HERE/registry.sh" push "$IMAGE" "$PUSH_NAME"
}

status() {
  resolve_version
  echo "source: docker.io $SRC_VERSION (trixie)"
  if [[ -x $PREFIX/$SRC_VERSION/bin/buildkitd ]]; then
    echo "binaries: $PREFIX/$SRC_VERSION/bin ($("$PREFIX/$SRC_VERSION/bin/buildkitd" --version 2>/dev/null))"
  else
    echo "binaries: not built"
  fi
  echo "$IMAGE on $HOST: $(dock image inspect --format '{{.Comment}}' "$IMAGE" 2>/dev/null || echo missing)"
}

cmd=build
while (($#)); do
  case "$1" in
  build | binaries | status) cmd="$1" ;;
  --host | -H) HOST="$2"; shift ;;
  --host=*) HOST="${1#--host=}" ;;
  --push) PUSH_NAME="$2"; shift ;;
  *) echo "usage: $0 [build|binaries|status] [--host unix:///path/docker.sock] [--push NAME]" >&2; exit 2 ;;
  esac
  shift
done

case "$cmd" in
status) status ;;
binaries)
  [[ $EUID -eq 0 ]] || die "needs root"
  lock_dir "$PREFIX"
  resolve_version
  compile
  echo "$BIN_DIR"
  ;;
build)
  [[ $EUID -eq 0 ]] || die "needs root"
  lock_dir "$PREFIX"
  resolve_version
  compile
  make_rootfs
  load_image
  push_image
  log "ready: $IMAGE ($SRC_VERSION) on $HOST"
  ;;
esac
