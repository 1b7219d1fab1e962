import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Builds the way a user's workflow would (docker/build-push-action runs
 * `docker buildx build`; engines without buildx run `DOCKER_BUILDKIT=1
 * docker build`), for integration tests and the demo.
 */
export type ClientName = 'buildx' | 'docker'

/**
 * The builder the integration tier runs on, from the environment scripts/test.sh sets per
 * profile: the engine (DOCKER_HOST, DOCKER_CONFIG), the buildx builder (BUILDX_BUILDER, which
 * the action's and the tests' `docker buildx` use as the current builder), the utility image as
 * that builder can pull it (a docker-container builder pulls from the local registry), the
 * stream route the action should take there, and whether the classic client is tested.
 */
export const TEST_PROFILE = {
  name: process.env.BMC_TEST_PROFILE || 'classic',
  streamLabel: process.env.BMC_TEST_STREAM_LABEL || 'loopback stream',
  classicClient: (process.env.BMC_TEST_PROFILE || 'classic') === 'classic'
}

/** The utility image as scripts/engine.sh imports it into the daemon (the name the examples' Dockerfiles use). */
export const LOCAL_UTILITY_IMAGE = 'buildkit-mount-cache/utility:busybox'
export const UTILITY_IMAGE = process.env.BMC_TEST_UTILITY_IMAGE || LOCAL_UTILITY_IMAGE

/** Build flags that make `FROM <LOCAL_UTILITY_IMAGE>` resolve to UTILITY_IMAGE on builders that pull it from a registry. */
export function utilityImageContext(): string[] {
  return UTILITY_IMAGE === LOCAL_UTILITY_IMAGE ? [] : ['--build-context', `${LOCAL_UTILITY_IMAGE}=docker-image://${UTILITY_IMAGE}`]
}

interface ClientCommand {
  cmd: string
  args: string[]
  env: Record<string, string>
}

const CLIENTS: Record<ClientName, ClientCommand> = {
  buildx: { cmd: 'docker', args: ['buildx', 'build', '--progress=plain'], env: {} },
  // The Debian 12 client (20.10): BuildKit without buildx. The current CLI hands
  // `docker build` to buildx, so it cannot exercise this path.
  docker: { cmd: '/usr/bin/docker', args: ['build', '--progress=plain'], env: { DOCKER_BUILDKIT: '1' } }
}

/** A directory to put first on PATH so the action's `docker` is the client under test. */
export function clientPathDir(client: ClientName): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'bmc-client-'))
  if (client === 'docker') symlinkSync('/usr/bin/docker', join(dir, 'docker'))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Runs a build of `dockerfile` (no other context) and exports its result into `outDir`. */
export function userBuild(client: ClientName, dockerfile: string, outDir: string, buildArgs: Record<string, string> = {}): string {
  const ctx = mkdtempSync(join(tmpdir(), 'bmc-ctx-'))
  try {
    writeFileSync(join(ctx, 'Dockerfile'), dockerfile)
    mkdirSync(outDir, { recursive: true })
    const c = CLIENTS[client]
    const args = [
      ...c.args,
      ...Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]),
      '--output',
      `type=local,dest=${outDir}`,
      ctx
    ]
    const r = spawnSync(c.cmd, args, { env: { ...process.env, ...c.env }, encoding: 'utf8', maxBuffer: 64 << 20 })
    if (r.status !== 0) throw new Error(`user build failed (${client}, exit ${r.status}):\n${r.stderr.slice(-4000)}`)
    return r.stderr
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}

/** Empties the builder's cache, cache mounts included: a fresh CI builder. */
export function pruneBuilder(client: ClientName): void {
  const c = CLIENTS[client]
  const args = client === 'buildx' ? ['buildx', 'prune', '--all', '--force'] : ['builder', 'prune', '--all', '--force']
  const r = spawnSync(c.cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`prune failed: ${r.stderr}`)
}

/**
 * A shell script (busybox sh) that lists a tree with everything the cache
 * must keep: type, size, owner, mode, mtime, link count, content digest and
 * link target. Inodes are printed so tests can group hardlinks.
 */
export function listingScript(root: string, out: string): string {
  return [
    `cd ${root}`,
    `find . | sort | while IFS= read -r f; do`,
    `  stat -c '%n|%F|%s|%u|%g|%a|%Y|%h|%i' "$f"`,
    `  if [ -L "$f" ]; then echo "-> $(readlink "$f")"; elif [ -f "$f" ]; then md5sum < "$f"; fi`,
    `done > ${out}`
  ].join('\n')
}

/** Replaces inode numbers by the first path that had them (hardlink groups), drops directory sizes (filesystem-specific). */
export function normalizeListing(text: string): string[] {
  const inodes = new Map<string, string>()
  return text
    .trim()
    .split('\n')
    .map(line => {
      if (line.startsWith('-> ') || !line.includes('|')) return line
      const fields = line.split('|')
      const [name = '', type = '', , , , , , , inode = ''] = fields
      if (!inodes.has(inode)) inodes.set(inode, name)
      fields[8] = inodes.get(inode) ?? ''
      if (type === 'directory') fields[2] = '-'
      return fields.join('|')
    })
}
