// The CLI (bundled dist/cli.cjs, freshly built) on the real engine: the full
// cycle save → empty builder → restore, checked bit-exact by listing the
// mount from a user build, for the local-dir backend and for S3 against a
// real S3-compatible server on 127.0.0.1 (with a multipart upload); two
// racing saves of one key; ls, prune, JSON output, exit codes, --version
// from the bundle alone, and the state file kept out of the build context.
import { spawn, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

import { bundleAction, REPO_ROOT } from '../test-support/action-runner.js'
import { UTILITY_IMAGE } from '../test-support/user-build.js'

interface S3rverInstance {
  httpServer: Server
  run(): Promise<AddressInfo>
  close(): Promise<void>
}
type S3rverClass = new (options: Record<string, unknown>) => S3rverInstance
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass

const BUCKET = 'bmc-cli'
const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' }

let bundle: ReturnType<typeof bundleAction>
let s3: S3rverInstance
let s3Endpoint = ''
/** Requests the S3 server received, as "METHOD /path?query". */
const s3Requests: string[] = []
const work = mkdtempSync(join(tmpdir(), 'bmc-cli-'))

beforeAll(async () => {
  const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { encoding: 'utf8' })
  if (engine.status !== 0) throw new Error(`engine.sh start failed:\n${engine.stderr}`)
  bundle = bundleAction()
  s3 = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: join(work, 's3-data'), configureBuckets: [{ name: BUCKET }] })
  s3Endpoint = `http://127.0.0.1:${(await s3.run()).port}`
  s3.httpServer.on('request', (req: IncomingMessage) => s3Requests.push(`${req.method ?? ''} ${req.url ?? ''}`))
})

afterAll(async () => {
  await s3?.close()
  bundle?.cleanup()
  rmSync(work, { recursive: true, force: true })
})

interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the bundled CLI (asynchronously: the S3 server answers from this process). */
async function cli(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [join(bundle.dir, 'cli.cjs'), ...args], {
    cwd,
    env: { ...process.env, GITHUB_ACTIONS: '', RUNNER_TEMP: '', XDG_STATE_HOME: join(work, 'state'), ...S3_CREDENTIALS, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  return { code, stdout, stderr }
}

async function ok(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const r = await cli(args, cwd, env)
  if (r.code !== 0) throw new Error(`buildkit-mount-cache ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`)
  return r
}

/** A user build (no network needed), its file system exported into a fresh directory whose path is returned. */
function userBuild(dockerfile: string): string {
  const ctx = mkdtempSync(join(work, 'ctx-'))
  const out = mkdtempSync(join(work, 'out-'))
  writeFileSync(join(ctx, 'Dockerfile'), dockerfile)
  const r = spawnSync(
    'docker',
    ['buildx', 'build', '--progress=plain', '--network=none', '--build-arg', `N=${randomUUID()}`, '--output', `type=local,dest=${out}`, ctx],
    {
      encoding: 'utf8',
      maxBuffer: 64 << 20
    }
  )
  if (r.status !== 0) throw new Error(`user build failed (exit ${r.status}):\n${r.stderr.slice(-4000)}`)
  return out
}

function pruneBuilder(): void {
  const r = spawnSync('docker', ['buildx', 'prune', '--all', '--force'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`prune failed: ${r.stderr}`)
}

/** Every entry below the mount root with name, size, owner, mode, mtime, and the content digest of files. */
const LISTING = [
  'cd /cache && find . -mindepth 1 | sort | while IFS= read -r f; do',
  `  stat -c '%n|%s|%u|%g|%a|%Y' "$f"`,
  '  if [ -f "$f" ] && [ ! -L "$f" ]; then md5sum < "$f"; fi',
  'done > /out/listing'
].join('\n')

/** One cache mount, a writer that fills it (and lists what it wrote), a reader that lists it. */
function scenario(randomMiB: number) {
  const run = randomUUID().slice(0, 8)
  const id = `cli-${run}`
  const mount = `--mount=type=cache,id=${id},target=/cache,uid=1000,gid=1000,mode=0750`
  const writer = `FROM ${UTILITY_IMAGE}
ARG N
RUN ${mount} <<'EOS'
set -eu
cd /cache
printf 'hello\\n' > plain.txt && chown 1000:1000 plain.txt && chmod 0640 plain.txt
head -c ${randomMiB * 1024 * 1024} /dev/urandom > random.bin && chown 1001:1002 random.bin
ln plain.txt hardlink.txt
ln -s plain.txt symlink
mkdir -p 'deep/dir with spaces' && echo deep > 'deep/dir with spaces/f' && chown -R 1234:5678 deep && chmod 0700 deep
: > empty && chmod 0600 empty
touch -t 202001020304.05 plain.txt random.bin 'deep/dir with spaces/f'
mkdir -p /out
${LISTING}
EOS
`
  const reader = `FROM ${UTILITY_IMAGE}
ARG N
RUN ${mount} <<'EOS'
set -eu
mkdir -p /out
${LISTING}
EOS
`
  const workspace = join(work, `ws-${run}`)
  mkdirSync(workspace)
  // The CLI discovers the mount (and its exact uid/gid/mode) in the workspace's Dockerfile.
  writeFileSync(join(workspace, 'Dockerfile'), writer)
  const common = ['--key-prefix', `t-${run}`, '--utility-image', UTILITY_IMAGE, '--client', 'buildx']
  const write = (): string => readFileSync(join(userBuild(writer), 'out/listing'), 'utf8')
  const read = (): string => readFileSync(join(userBuild(reader), 'out/listing'), 'utf8')
  return { run, id, workspace, common, write, read }
}

interface RestoreJson {
  'cache-hit': boolean
  state: string
  mounts: { id: string; hit: boolean; 'matched-key': string; 'restored-bytes': number }[]
}
interface SaveJson {
  mounts: { id: string; outcome: string; 'entry-key'?: string }[]
}
interface LsJson {
  'total-bytes': number
  entries: { mount: string | null; key: string; size: number }[]
}

const BACKENDS: [name: string, spec: () => string, randomMiB: number][] = [
  ['local directory', () => `dir:${join(work, 'store')}`, 3],
  // ~12 MiB of random bytes stays ~12 MiB compressed: three 5 MiB parts.
  ['S3', () => `s3://${BUCKET}/ci/cache?endpoint=${s3Endpoint}&part-size=5M`, 12]
]

describe.each(BACKENDS)('%s backend', (_name, backendSpec, randomMiB) => {
  test('restore (miss) → build → save → empty builder → restore (hit): the mount is bit-exact', async () => {
    const s = scenario(randomMiB)
    const backend = ['--backend', backendSpec()]
    s3Requests.length = 0

    const miss = JSON.parse((await ok(['restore', ...s.common, ...backend, '--json'], s.workspace)).stdout) as RestoreJson
    expect(miss.mounts.map(m => [m.id, m.hit])).toEqual([[s.id, false]])
    // The state stays out of the workspace (the build context): in XDG_STATE_HOME, where the result says.
    expect(readdirSync(s.workspace)).toEqual(['Dockerfile'])
    expect(miss.state.startsWith(join(work, 'state', 'buildkit-mount-cache') + '/')).toBe(true)
    expect(JSON.parse(readFileSync(miss.state, 'utf8'))).toMatchObject({ mounts: [expect.anything()] })
    const written = s.write()
    expect(written).toContain('./random.bin|')

    const saved = await ok(['save', ...s.common, ...backend, '--json'], s.workspace)
    const saveResult = JSON.parse(saved.stdout) as SaveJson
    expect(saveResult.mounts.map(m => [m.id, m.outcome])).toEqual([[s.id, 'saved']])
    if (backendSpec().startsWith('s3://')) {
      expect(s3Requests.filter(r => r.startsWith('POST ') && r.includes('uploads'))).toHaveLength(1)
      expect(s3Requests.filter(r => r.startsWith('PUT ') && r.includes('partNumber='))).toHaveLength(3)
    }

    pruneBuilder()
    expect(s.read()).toBe('')
    const restored = await ok(['restore', ...s.common, ...backend], s.workspace)
    expect(restored.stdout).toMatch(new RegExp(`${s.id}: restored t-${s.run}-`))
    expect(restored.stdout).toMatch(/Restored 1 of 1 mount\(s\)/)
    expect(s.read()).toBe(written)

    // The state file holds what restore injected: save sees nothing changed.
    const again = JSON.parse((await ok(['save', ...s.common, ...backend, '--json'], s.workspace)).stdout) as SaveJson
    expect(again.mounts.map(m => m.outcome)).toEqual(['nothing-to-save'])
    expect(readdirSync(s.workspace)).toEqual(['Dockerfile'])

    const listed = JSON.parse((await ok(['ls', ...s.common, ...backend, '--json'], s.workspace)).stdout) as LsJson
    expect(listed.entries.map(e => [e.mount, e.key])).toEqual([[s.id, saveResult.mounts[0]?.['entry-key']]])
    expect(listed['total-bytes']).toBeGreaterThan(randomMiB * 1024 * 1024 * 0.9)
    const human = await ok(['ls', ...s.common, ...backend], s.workspace)
    expect(human.stdout).toMatch(new RegExp(`^${s.id}: 1 entry, `, 'm'))

    const pruned = await ok(['prune', '--key-prefix', `t-${s.run}`, ...backend, '--max-total', '0', '--json'], s.workspace)
    expect((JSON.parse(pruned.stdout) as { removed: unknown[] }).removed).toHaveLength(1)
    const empty = JSON.parse((await ok(['ls', ...s.common, ...backend, '--json'], s.workspace)).stdout) as LsJson
    expect(empty.entries).toEqual([])
  })
})

test('two CLI saves racing on one key into one directory: the first complete one wins, never torn', async () => {
  const s = scenario(24)
  const storeDir = join(work, `race-${s.run}`)
  const zstd = zstdPath()
  // zstd forced: the store would keep incompressible test data as it is, without running zstd.
  const backend = ['--backend', `dir:${storeDir}${zstd ? '?compression=zstd' : ''}`]
  const written = s.write()
  // A zstd that takes 10 s to start: both saves are past their exists() check
  // before either commits, so they really race to commit the same key.
  // (Without zstd the stores use gzip in-process and the loser may just find the entry.)
  const slowBin = join(work, `slow-bin-${s.run}`)
  mkdirSync(slowBin)
  if (zstd) writeFileSync(join(slowBin, 'zstd'), `#!/bin/sh\nsleep 10\nexec ${zstd} "$@"\n`, { mode: 0o755 })
  const env = { PATH: `${slowBin}:${process.env.PATH ?? ''}` }
  // No state files: both plan from the options and extract the same content, so the same key.
  const [a, b] = await Promise.all([
    ok(['save', ...s.common, ...backend, '--state', 'none-a.json', '--json'], s.workspace, env),
    ok(['save', ...s.common, ...backend, '--state', 'none-b.json', '--json'], s.workspace, env)
  ])
  const outcomes = [a, b].map(r => (JSON.parse(r.stdout) as SaveJson).mounts[0])
  if (outcomes.some(o => o?.outcome === 'nothing-to-save')) throw new Error(`a save found nothing to save:\n${a.stderr}\n${b.stderr}`)
  expect(outcomes[0]?.['entry-key']).toBe(outcomes[1]?.['entry-key'])
  expect(outcomes.map(o => o?.outcome).sort()).toEqual(zstd ? ['not-saved', 'saved'] : [expect.stringMatching(/^(exists|not-saved)$/), 'saved'])

  // The loser removed its own archive: one sidecar, one archive, nothing left in the temp dir.
  const names = readdirSync(storeDir)
  expect(names.filter(n => n.endsWith('.json'))).toHaveLength(1)
  expect(names.filter(n => /\.tar(\.zst|\.gz)?$/.test(n))).toHaveLength(1)
  expect(readdirSync(join(storeDir, '.tmp'))).toEqual([])

  pruneBuilder()
  const r = await ok(['restore', ...s.common, ...backend, '--json'], s.workspace)
  if (!(JSON.parse(r.stdout) as RestoreJson)['cache-hit']) throw new Error(`restore missed:\n${r.stdout}\n${r.stderr}`)
  expect(s.read()).toBe(written)
})

function zstdPath(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : undefined
}

test('exit codes: cache trouble is a warning and 0, a bad option is 2', async () => {
  const s = scenario(1)
  // Nothing listens on port 9: the store is down.
  const down = await cli(['restore', ...s.common, '--backend', `s3://${BUCKET}/x?endpoint=http://127.0.0.1:9`], s.workspace)
  expect(down.code).toBe(0)
  expect(down.stderr).toMatch(new RegExp(`warning: ${s.id}: cannot restore the cache entry`))

  const badBackend = await cli(['restore', ...s.common, '--backend', 'ftp://x'], s.workspace)
  expect(badBackend.code).toBe(2)
  expect(badBackend.stderr).toMatch(/--backend: must be github, dir:\/path or s3:\/\/bucket\/prefix/)

  const badInput = await cli(['restore', ...s.common, '--build-arg', '=novalue'], s.workspace)
  expect(badInput.code).toBe(2)
  expect(badInput.stderr).toMatch(/--build-arg: "=novalue" has no name/)

  const unknown = await cli(['restore', '--frobnicate'], s.workspace)
  expect(unknown.code).toBe(2)
  expect(unknown.stderr).toMatch(/Unknown option '--frobnicate'/)

  const githubLs = await cli(['ls', '--backend', 'github'], s.workspace)
  expect(githubLs.code).toBe(2)
  expect(githubLs.stderr).toMatch(/ls needs a dir: or s3:\/\/ backend/)

  const help = await cli(['--help'], s.workspace)
  expect(help.code).toBe(0)
  expect(help.stdout).toMatch(/^Usage: buildkit-mount-cache <command>/)
  const restoreHelp = await cli(['restore', '--help'], s.workspace)
  expect(restoreHelp.code).toBe(0)
  expect(restoreHelp.stdout).toMatch(/^Usage: buildkit-mount-cache restore \[options\]/)
  expect(restoreHelp.stdout).toContain('--state FILE')

  // --version from the bundle's files copied alone (as onto a CI agent): the version is built in, no package.json is read.
  const alone = mkdtempSync(join(work, 'alone-'))
  for (const f of ['cli.cjs', 'index.cjs']) writeFileSync(join(alone, f), readFileSync(join(bundle.dir, f)))
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  const version = spawnSync(process.execPath, [join(alone, 'cli.cjs'), '--version'], { cwd: alone, encoding: 'utf8' })
  expect([version.status, version.stdout]).toEqual([0, `${pkg.version}\n`])
  expect(readFileSync(join(bundle.dir, 'cli.cjs'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true)
})
