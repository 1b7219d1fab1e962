// Engine faults for the issue 7 tests: a docker CLI that dies during the
// generated builds, snapshots of what the engine keeps (containers, dangling
// images), a small tmpfs to fill up.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Writes `dir/docker`: the real CLI, except that `buildx build` dies on the
 * way, as the engine going away would look to the action:
 * - BMC_DIE=bytes: the build's stdout stops after BMC_DIE_BYTES bytes, then the CLI dies (exit 137).
 * - BMC_DIE=run: the CLI is killed (SIGKILL) as soon as the build's RUN step starts.
 * Anything else: the real CLI.
 */
export function dyingDocker(dir: string, real = '/usr/local/bin/docker'): string {
  mkdirSync(dir, { recursive: true })
  const path = join(dir, 'docker')
  writeFileSync(
    path,
    `#!/bin/bash
real=${JSON.stringify(real)}
if [ "$1" != buildx ] || [ "$2" != build ]; then exec "$real" "$@"; fi
case "$BMC_DIE" in
  bytes)
    "$real" "$@" | head -c "\${BMC_DIE_BYTES:-4096}"
    exit 137 ;;
  run)
    log=$(mktemp)
    exec 3<&0
    "$real" "$@" <&3 3<&- 2>"$log" &
    pid=$!
    for _ in $(seq 1 1200); do
      grep -q -e 'tar -c' -e 'cp -a' "$log" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid"
    cat "$log" >&2
    rm -f "$log"
    echo "docker: killed" >&2
    exit 137 ;;
  *) exec "$real" "$@" ;;
esac
`
  )
  chmodSync(path, 0o755)
  return path
}

function lines(cmd: string, args: string[]): string[] {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout.split('\n').filter(Boolean).sort()
}

/**
 * What a failed generated build could leave in the engine: containers of the
 * utility image, dangling images built by a generated build (their history
 * has the /bmc/ paths). Other users of the shared engine are not counted.
 */
export function engineLeftovers(utilityImage: string): { containers: string[]; dangling: string[] } {
  return {
    containers: lines('docker', ['ps', '-aq', '--filter', `ancestor=${utilityImage}`]),
    dangling: lines('docker', ['images', '-q', '--filter', 'dangling=true']).filter(id =>
      lines('docker', ['history', '--no-trunc', '--format', '{{.CreatedBy}}', id]).some(l => l.includes('/bmc/'))
    )
  }
}

/** Mounts a tmpfs over an existing directory (hiding what is in it). */
export function tmpfsOver(dir: string, size: string): (() => void) | undefined {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) return undefined
  return () => {
    spawnSync('umount', [dir])
  }
}

/**
 * BMC_TEST_ENGINE=private: runs the calling test file on a private dockerd
 * (scripts/bench/private-engine.ts: same binary, own socket, data root and
 * bridge), for machines where other jobs build on and `buildx prune --all`
 * the shared engine while these tests run (their prunes empty our cache
 * mounts). Sets DOCKER_HOST for everything the file spawns; returns the
 * teardown. Default: the shared engine, as the other integration tests.
 */
export async function useTestEngine(utilityImage: string): Promise<() => Promise<void>> {
  if (process.env.BMC_TEST_ENGINE !== 'private') return async () => undefined
  const { startPrivateEngine } = await import('../../scripts/bench/private-engine.js')
  const tag = `t${Math.random().toString(36).slice(2, 11)}`
  const engine = await startPrivateEngine(tag, utilityImage)
  const previous = process.env.DOCKER_HOST
  process.env.DOCKER_HOST = engine.host
  return async () => {
    if (previous === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = previous
    await engine.stop()
  }
}
