// `npm run bench -- --cache-clients [--size-mib N]`: the GitHub cache's two
// clients side by side, on the local cache service (v2), with no engine: the
// cache library (@actions/cache: an outer tar, zstd whatever the content, an
// archive file downloaded then unpacked) against the stream client
// (src/storage/github: the codec chosen by a probe, the body streamed both
// ways). Each operation runs in its own node process so its peak RSS is its
// own. Two archives of the same size: incompressible (random bytes, like
// caches of .crate/.whl/.deb files) and compressible (source-like text).
// Every restore is checked byte for byte against what was saved.
//
// The machine is noisy: read the ratios, not the seconds.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { copyFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { finished } from 'node:stream/promises'

import { REPO_ROOT } from '../../test-support/action-runner.js'
import { startCacheService } from '../../test-support/cache-service/server.js'

type Client = 'library' | 'stream'
type Kind = 'incompressible' | 'compressible'

interface Sample {
  client: Client
  kind: Kind
  op: 'save' | 'restore'
  seconds: number
  maxRssMiB: number
  /** CPU seconds of the op's process and the processes it ran (tar, zstd); the service's own is not in it. */
  cpuSeconds: number
  /** Bytes the cache service stored for the entry. */
  storedBytes?: number
}

const WORDS = 'const let function return import export from default async await if else for while yield class new this'.split(' ')

/** An archive-sized file: random bytes, or text with the redundancy of source code. */
async function makeArchive(path: string, bytes: number, kind: Kind): Promise<void> {
  const out = createWriteStream(path)
  let written = 0
  while (written < bytes) {
    const size = Math.min(4 * 1024 * 1024, bytes - written)
    let chunk: Buffer
    if (kind === 'incompressible') chunk = randomBytes(size)
    else {
      const noise = randomBytes(size)
      const parts: string[] = []
      let length = 0
      for (let i = 0; length < size; i++) {
        const word = `${WORDS[noise[i % size]! % WORDS.length]}${noise[(i + 1) % size]! % 7 === 0 ? '\n' : ' '}`
        parts.push(word)
        length += word.length
      }
      chunk = Buffer.from(parts.join('')).subarray(0, size)
    }
    if (!out.write(chunk)) await new Promise<void>(resolve => out.once('drain', () => resolve()))
    written += size
  }
  out.end()
  await finished(out)
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) hash.update(chunk)
  return hash.digest('hex')
}

/**
 * One operation in a child process (scripts/bench/cache-client-op.ts), timed
 * there; its peak RSS from the probe. Asynchronous: the cache service runs
 * in this process and must answer meanwhile.
 */
async function runOp(op: 'save' | 'restore', client: Client, archive: string, key: string, env: NodeJS.ProcessEnv, rssFile: string): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/bench/cache-client-op.ts'), op, client, archive, key], {
    cwd: REPO_ROOT,
    env: { ...env, BMC_BENCH_RSS_FILE: rssFile, NODE_OPTIONS: `--require ${join(REPO_ROOT, 'scripts/bench/rss-probe.cjs')}` },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const [code] = (await once(child, 'close')) as [number | null]
  if (code !== 0) throw new Error(`${op} with the ${client} client failed:\n${output}`)
  const seconds = /^seconds (\S+)$/m.exec(output)?.[1]
  if (seconds === undefined) throw new Error(`${op} with the ${client} client printed no time:\n${output}`)
  return Number(seconds)
}

function lastProbe(rssFile: string): { maxRssMiB: number; cpuSeconds: number } {
  const lines = readFileSync(rssFile, 'utf8').trim().split('\n')
  const last = JSON.parse(lines.at(-1) ?? '{}') as { maxRssKiB?: number; cpuSeconds?: number }
  return { maxRssMiB: Math.round((last.maxRssKiB ?? 0) / 1024), cpuSeconds: last.cpuSeconds ?? 0 }
}

export async function runCacheClientBench(sizeMiB: number): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'bmc-bench-clients-'))
  const service = await startCacheService({ dataDir: join(work, 'service') })
  const samples: Sample[] = []
  try {
    const runnerTemp = join(work, 'temp')
    const workspace = join(work, 'workspace')
    for (const dir of [runnerTemp, workspace]) spawnSync('mkdir', ['-p', dir])
    const env: NodeJS.ProcessEnv = { ...process.env, ...service.env(), RUNNER_TEMP: runnerTemp, GITHUB_WORKSPACE: workspace }
    const rssFile = join(work, 'rss.jsonl')
    for (const kind of ['incompressible', 'compressible'] as const) {
      const source = join(runnerTemp, `source-${kind}.tar`)
      await makeArchive(source, sizeMiB * 1024 * 1024, kind)
      const digest = await sha256(source)
      for (const client of ['library', 'stream'] as const) {
        const key = `bench-${kind}-${client}-${randomBytes(4).toString('hex')}`
        // The library keys its entries' version on the archive path: save and restore use the same one.
        const archive = join(runnerTemp, 'buildkit-mount-cache', `${kind}.tar`)
        spawnSync('mkdir', ['-p', join(runnerTemp, 'buildkit-mount-cache')])
        await copyFile(source, archive)
        const saveSeconds = await runOp('save', client, archive, key, env, rssFile)
        const stored = service.entries().find(e => e.key === key)?.size
        samples.push({
          client,
          kind,
          op: 'save',
          seconds: saveSeconds,
          ...lastProbe(rssFile),
          ...(stored !== undefined ? { storedBytes: stored } : {})
        })
        rmSync(archive)
        const restoreSeconds = await runOp('restore', client, archive, key, env, rssFile)
        samples.push({ client, kind, op: 'restore', seconds: restoreSeconds, ...lastProbe(rssFile) })
        if ((await sha256(archive)) !== digest) throw new Error(`${client} restored ${kind} differently`)
        if (statSync(archive).size !== sizeMiB * 1024 * 1024) throw new Error(`${client} restored a ${kind} archive of another size`)
        rmSync(archive)
      }
      rmSync(source)
    }
  } finally {
    await service.close()
    rmSync(work, { recursive: true, force: true })
  }
  printTable(sizeMiB, samples)
}

function printTable(sizeMiB: number, samples: Sample[]): void {
  const find = (client: Client, kind: Kind, op: Sample['op']): Sample => {
    const s = samples.find(x => x.client === client && x.kind === kind && x.op === op)
    if (!s) throw new Error(`no sample ${client} ${kind} ${op}`)
    return s
  }
  const lines = [
    `GitHub cache clients, ${sizeMiB} MiB archive, local cache service v2 (one run; ratios = stream / library, < 1 is faster)`,
    '',
    '| archive | phase | stream × library (time) | stream × library (client CPU) | library peak RSS | stream peak RSS | stored (library → stream) |',
    '|---|---|---|---|---|---|---|'
  ]
  for (const kind of ['incompressible', 'compressible'] as const) {
    for (const op of ['save', 'restore'] as const) {
      const lib = find('library', kind, op)
      const str = find('stream', kind, op)
      const stored =
        op === 'save' && lib.storedBytes !== undefined && str.storedBytes !== undefined
          ? `${(lib.storedBytes / sizeMiB / 1024 / 1024).toFixed(2)} → ${(str.storedBytes / sizeMiB / 1024 / 1024).toFixed(2)} × the archive`
          : ''
      const cpu = lib.cpuSeconds > 0 ? (str.cpuSeconds / lib.cpuSeconds).toFixed(2) : '?'
      lines.push(`| ${kind} | ${op} | ${(str.seconds / lib.seconds).toFixed(2)} | ${cpu} | ${lib.maxRssMiB} MiB | ${str.maxRssMiB} MiB | ${stored} |`)
    }
  }
  console.log(lines.join('\n'))
  if (process.env.BMC_BENCH_SECONDS)
    for (const x of samples) console.log(`${x.client} ${x.kind} ${x.op}: ${x.seconds.toFixed(2)} s, ${x.cpuSeconds.toFixed(2)} s CPU`)
}
