// Engine faults for the issue 7 tests: a docker CLI that dies during the
// generated builds, a utility image whose RUN never returns, snapshots of
// what the engine keeps (containers, dangling images, running builds,
// processes), a small tmpfs to fill up.
import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { REPO_ROOT } from '../action-runner.js'
import { LOCAL_UTILITY_IMAGE } from '../user-build.js'

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

/** A socket nobody serves. */
export const DEAD_DOCKER_HOST = 'unix:///nonexistent/docker.sock'

/**
 * The environment of a job whose engine is gone: DOCKER_HOST at a socket
 * nobody serves and, where the builder under test is a buildx instance of
 * DOCKER_CONFIG (a docker-container builder keeps its node's endpoint there,
 * so DOCKER_HOST alone does not take it away), a copy of DOCKER_CONFIG in
 * `dir` whose builders' nodes point at that socket too.
 */
export function deadEngineEnv(dir: string): NodeJS.ProcessEnv {
  const config = process.env.DOCKER_CONFIG
  if (config === undefined || !existsSync(join(config, 'buildx', 'instances'))) return { DOCKER_HOST: DEAD_DOCKER_HOST }
  rmSync(dir, { recursive: true, force: true })
  // The CLI plugins are linked, not copied (large binaries).
  cpSync(config, dir, { recursive: true, filter: src => src !== join(config, 'cli-plugins') })
  if (existsSync(join(config, 'cli-plugins'))) symlinkSync(join(config, 'cli-plugins'), join(dir, 'cli-plugins'))
  const instances = join(dir, 'buildx', 'instances')
  for (const name of readdirSync(instances)) {
    const file = join(instances, name)
    writeFileSync(file, readFileSync(file, 'utf8').replace(/"Endpoint":"[^"]*"/g, `"Endpoint":${JSON.stringify(DEAD_DOCKER_HOST)}`))
  }
  return { DOCKER_HOST: DEAD_DOCKER_HOST, DOCKER_CONFIG: dir }
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

/** What the RUN of a stalling utility image runs, forever: the mark to look for in the process table. */
export const STALL_COMMAND = 'sleep 987654'

/**
 * A utility image whose RUNs never return and print nothing: its /bin/sh (what
 * BuildKit runs a RUN's shell form with) is a script that sleeps, so every
 * generated inject and extract build stalls, on every route (a stream's peer
 * never connects, the build context is never read). Built from the local
 * utility image on the daemon's own builder; when the builder under test pulls
 * `utilityImage` from the local registry, pushed there beside it. Returns the
 * name that builder pulls.
 */
export function stallingUtilityImage(utilityImage: string): string {
  const tag = 'stall'
  const local = `${LOCAL_UTILITY_IMAGE.slice(0, LOCAL_UTILITY_IMAGE.lastIndexOf(':'))}:${tag}`
  // The running shell keeps its binary: replacing /bin/sh is its last act.
  const dockerfile = `FROM ${LOCAL_UTILITY_IMAGE}\nRUN printf '#!/bin/busybox ash\\nexec ${STALL_COMMAND}\\n' > /bin/stall && chmod 755 /bin/stall && mv /bin/stall /bin/sh\n`
  const build = spawnSync('docker', ['buildx', 'build', '--builder', 'default', '--progress=plain', '-t', local, '-'], {
    input: dockerfile,
    encoding: 'utf8'
  })
  if (build.status !== 0) throw new Error(`cannot build ${local}: ${build.stderr.slice(-2000)}`)
  if (utilityImage === LOCAL_UTILITY_IMAGE) return local
  if (!utilityImage.endsWith(`/${LOCAL_UTILITY_IMAGE}`)) throw new Error(`${utilityImage} is not the local utility image in a registry`)
  const push = spawnSync('bash', [join(REPO_ROOT, 'scripts/registry.sh'), 'push', local, local], { encoding: 'utf8' })
  if (push.status !== 0) throw new Error(`cannot push ${local}: ${push.stderr.slice(-2000)}`)
  return `${utilityImage.slice(0, -LOCAL_UTILITY_IMAGE.length)}${local}`
}

/** Processes whose command line contains `text` (the process table sees into every container, builders' RUNs too). */
export function processesWith(text: string): string[] {
  const r = spawnSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ps failed: ${r.stderr}`)
  return r.stdout
    .split('\n')
    .map(l => l.trim())
    .filter(l => l.includes(text) && !/^\d+ ps -eo /.test(l))
}

/**
 * The builds the current builder reports running (`docker buildx history`,
 * buildx 0.20 and later); undefined where buildx cannot tell (older buildx:
 * the process table shows a RUN that is still there).
 */
export function runningBuilds(): string[] | undefined {
  const r = spawnSync('docker', ['buildx', 'history', 'ls', '--format', '{{.Ref}} {{.Status}}'], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) return undefined
  return r.stdout
    .split('\n')
    .filter(l => / running$/i.test(l))
    .map(l => l.split(' ')[0] ?? '')
    .sort()
}
