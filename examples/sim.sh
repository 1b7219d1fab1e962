#!/bin/sh
# Stands in for apt, pip, cargo, go, npm, pnpm and ccache in the tested variants of
# the README's examples: they build offline from busybox, with the same cache mounts
# as the real Dockerfiles, and this script plays the package manager.
#
#   sim fetch FILE...    MODE=write:  "downloads" FILE into a cache mount
#                        MODE=verify: FILE must be there, as written: restored from the cache
#   sim fetch --read-only FILE...   the same, FILE made read-only once written
#   sim scratch FILE...  MODE=write:  writes FILE (unpacked sources, checkouts: recreated on demand)
#                        MODE=verify: FILE must NOT be there (left out by exclude=, or on a tmpfs)
#   sim freeze DIR...    MODE=write:  makes DIR read-only, as Go does with its module cache
#                        both modes:  lists everything under DIR
#
# Every file is listed in /tmp/sim.report (owner, mode, size, mtime), so the test can
# compare what the write build left with what the verify build finds.
set -eu
mode=${MODE:-write}
report=/tmp/sim.report
command=$1
shift
case $command in
  fetch)
    read_only=
    if [ "${1:-}" = --read-only ]; then
      read_only=1
      shift
    fi
    for f in "$@"; do
      if [ "$mode" = write ]; then
        mkdir -p "$(dirname "$f")"
        echo "downloaded $f" > "$f"
        if [ -n "$read_only" ]; then
          chmod a-w "$f"
        fi
      elif [ "$(cat "$f" 2>/dev/null)" != "downloaded $f" ]; then
        echo "sim: $f was not restored from the cache" >&2
        exit 1
      fi
      stat -c 'kept %u:%g %a %s %Y %n' "$f" >> "$report"
    done
    ;;
  scratch)
    for f in "$@"; do
      if [ "$mode" = write ]; then
        mkdir -p "$(dirname "$f")"
        echo "unpacked $f" > "$f"
      elif [ -e "$f" ]; then
        echo "sim: $f should not have been saved" >&2
        exit 1
      fi
      echo "not kept $f" >> "$report"
    done
    ;;
  freeze)
    for d in "$@"; do
      if [ "$mode" = write ]; then
        chmod -R a-w "$d"
      fi
      find "$d" | sort | while IFS= read -r f; do
        stat -c 'frozen %u:%g %a %Y %n' "$f" >> "$report"
      done
    done
    ;;
  *)
    echo "sim: unknown command $command" >&2
    exit 2
    ;;
esac
