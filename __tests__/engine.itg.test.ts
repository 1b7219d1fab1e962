// Integration test against the local engine from scripts/engine.sh (dockerd 26, buildx 0.13, the
// Debian 12 client 20.10): a cache mount written by one build is read back by a later build, through
// both client paths the action supports. Needs root (engine.sh start installs and starts what is missing).
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, beforeAll, describe, expect, test } from '@jest/globals'

const UTILITY_IMAGE = 'buildkit-mount-cache/utility:busybox'
const ENGINE = fileURLToPath(new URL('../scripts/engine.sh', import.meta.url))

interface Client {
  name: string
  cmd: string
  args: string[]
  env: Record<string, string>
}
// What GitHub runners use: the current CLI plus the buildx plugin.
const buildx: Client = { name: 'buildx', cmd: 'docker', args: ['buildx', 'build', '--progress=plain'], env: {} }
// No buildx: the classic client with BuildKit switched on.
const classic: Client = {
  name: 'classic',
  cmd: '/usr/bin/docker',
  args: ['build', '--progress', 'plain'],
  env: { DOCKER_BUILDKIT: '1' }
}

const runId = `bmc-itg-${process.pid}-${randomUUID().slice(0, 8)}`
const dir = mkdtempSync(join(tmpdir(), 'engine-itg-'))
const usedIds: string[] = []

function check(what: string, r: ReturnType<typeof spawnSync>): Buffer {
  if (r.error) throw r.error
  if (r.status !== 0) {
    throw new Error(`${what} exited ${r.status ?? r.signal}:\n${String(r.stderr).slice(-3000)}`)
  }
  return r.stdout as Buffer
}

/** A build context as a tar stream (what the action feeds to `build -`), every entry owned by 1000:1000. */
function contextTar(name: string, dockerfile: string, data: Record<string, string> = {}): Buffer {
  const ctx = join(dir, name)
  mkdirSync(join(ctx, 'data'), { recursive: true })
  writeFileSync(join(ctx, 'Dockerfile'), dockerfile)
  for (const [file, body] of Object.entries(data)) writeFileSync(join(ctx, 'data', file), body, { mode: 0o640 })
  const args = ['--numeric-owner', '--owner=1000', '--group=1000', '-C', ctx, '-c', '.']
  return check('tar -c', spawnSync('tar', args, { maxBuffer: 64 << 20 }))
}

/** Runs a build with the context on stdin; returns stdout (the exported tar, if any). */
function build(client: Client, context: Buffer, extra: string[]): Buffer {
  const args = [...client.args, '--network=none', ...extra, '-']
  const r = spawnSync(client.cmd, args, {
    input: context,
    env: { ...process.env, ...client.env },
    maxBuffer: 64 << 20
  })
  return check(`${client.name}: ${client.cmd} ${args.join(' ')}`, r)
}

function tar(args: string[], input: Buffer): string {
  return check(`tar ${args.join(' ')}`, spawnSync('tar', args, { input, maxBuffer: 64 << 20 })).toString()
}

beforeAll(() => {
  check('engine.sh start', spawnSync('bash', [ENGINE, 'start'], { encoding: 'buffer', timeout: 280_000 }))
}, 300_000)

afterAll(() => {
  rmSync(dir, { recursive: true, force: true })
  // Best effort: drop the cache-mount records this run created (their description names the id).
  const du = spawnSync('docker', ['buildx', 'du', '--verbose'], { encoding: 'utf8' })
  let record = ''
  for (const line of (du.stdout ?? '').split('\n')) {
    const id = /^ID:\s+(\S+)/.exec(line)
    if (id) record = id[1]!.replace(/\*$/, '')
    if (record && usedIds.some(u => line.includes(`with id "/${u}"`) || line.includes(`with id "${u}"`))) {
      spawnSync('docker', ['buildx', 'prune', '--force', '--filter', `id=${record}`])
    }
  }
})

describe('cache mount round trip through the local engine', () => {
  test.each([
    { writer: buildx, reader: buildx, title: 'buildx writes, buildx reads' },
    { writer: classic, reader: classic, title: 'classic writes, classic reads' },
    { writer: buildx, reader: classic, title: 'buildx writes, classic reads (one daemon, one cache)' }
  ])('$title', ({ writer, reader }) => {
    const id = `${runId}-${writer.name}-${reader.name}`
    usedIds.push(id)
    const token = randomUUID()

    const inject = contextTar(
      `inject-${id}`,
      [
        `FROM ${UTILITY_IMAGE}`,
        'ARG NONCE',
        `RUN --mount=type=cache,id=${id},target=/c --mount=type=bind,source=data,target=/d cp -a /d/. /c/`,
        ''
      ].join('\n'),
      { token }
    )
    // Nothing to export: the cache mount is the result.
    const injected = build(writer, inject, ['--build-arg', `NONCE=${randomUUID()}`, '--output', 'type=tar,dest=/dev/null'])
    expect(injected.length).toBe(0)

    const extract = contextTar(
      `extract-${id}`,
      [
        `FROM ${UTILITY_IMAGE} AS work`,
        'ARG NONCE',
        `RUN --mount=type=cache,id=${id},target=/c mkdir /out && cp -a /c/. /out/`,
        'FROM scratch',
        'COPY --from=work /out /',
        ''
      ].join('\n')
    )
    const out = build(reader, extract, ['--build-arg', `NONCE=${randomUUID()}`, '--output', 'type=tar,dest=-'])

    // stdout is nothing but the tar stream (progress goes to stderr), with uid/gid and mode kept.
    expect(out.length % 512).toBe(0)
    expect(tar(['-t', '-f', '-'], out).split('\n').filter(Boolean)).toEqual(['token'])
    expect(tar(['-x', '-O', '-f', '-', 'token'], out)).toBe(token)
    expect(tar(['-t', '-v', '--numeric-owner', '-f', '-'], out)).toMatch(/^-rw-r----- 1000\/1000 +36 /)
  })
})
