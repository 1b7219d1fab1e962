// Small process, timing and BuildKit helpers shared by the bench scripts.
import { spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

export interface ShellResult {
  code: number | null
  stdout: string
  stderr: string
  seconds: number
}

/**
 * Runs a bash script (`set -euo pipefail`) and times it from spawn to exit.
 * stdout/stderr are kept (tails only) for progress parsing and errors; data
 * streams of the bench always go through pipes inside the script, never
 * through node.
 */
export async function sh(script: string, options: { env?: NodeJS.ProcessEnv; allowFail?: boolean } = {}): Promise<ShellResult> {
  const started = performance.now()
  const child = spawn('bash', ['-c', `set -euo pipefail\n${script}`], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  const keep = (text: string, chunk: string): string => (text + chunk).slice(-4 << 20)
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout = keep(stdout, c)))
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = keep(stderr, c)))
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  const seconds = (performance.now() - started) / 1000
  if (code !== 0 && !options.allowFail) {
    throw new Error(`command failed (exit ${code}):\n${script.slice(0, 2000)}\n--- stderr (tail):\n${stderr.slice(-4000)}`)
  }
  return { code, stdout, stderr, seconds }
}

/** Single-quotes a string for bash. */
/**
 * A function that builds `dockerfile` in `work/ctx-<name>` on the current
 * builder, without networking or output (the bench's generator and
 * signature builds), and returns the build's plain progress.
 */
export function cacheOnlyBuilder(work: string): (name: string, dockerfile: string) => Promise<string> {
  return async (name, dockerfile) => {
    const dir = join(work, `ctx-${name}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'Dockerfile'), dockerfile)
    return (await sh(`docker buildx build --progress=plain --network=none --output type=cacheonly ${q(dir)}`)).stderr
  }
}

export function q(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const started = performance.now()
  const value = await fn()
  return { value, seconds: (performance.now() - started) / 1000 }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

// ---------------------------------------------------------------------------
// BuildKit progress (`--progress=plain`)

export interface ProgressStep {
  n: number
  name: string
  seconds?: number
  cached: boolean
}

/** Steps of a plain-progress log: `#N name`, then `#N DONE 1.2s` / `#N CACHED`. */
export function parseProgress(text: string): ProgressStep[] {
  const steps = new Map<number, ProgressStep>()
  for (const raw of text.split('\n')) {
    const m = /^#(\d+) (.*)$/.exec(raw.trim())
    if (!m) continue
    const n = Number(m[1])
    const rest = (m[2] ?? '').trim()
    const step = steps.get(n)
    if (!step) {
      steps.set(n, { n, name: rest, cached: false })
      continue
    }
    const done = /^DONE ([\d.]+)s$/.exec(rest)
    if (done) step.seconds = Number(done[1])
    else if (rest === 'CACHED') step.cached = true
  }
  return [...steps.values()]
}

export type StepKind = 'context' | 'run' | 'copy' | 'export' | 'other'

export function stepKind(name: string): StepKind {
  if (/^exporting/.test(name)) return 'export'
  if (/load (remote )?build context|^copy \/context \/|^\[internal\] load build context/.test(name)) return 'context'
  if (/\] RUN /.test(name)) return 'run'
  if (/\] COPY /.test(name)) return 'copy'
  return 'other'
}

/** Seconds per kind of step (steps of these builds run one after another). */
export function stepSeconds(text: string): Record<StepKind, number> {
  const out: Record<StepKind, number> = { context: 0, run: 0, copy: 0, export: 0, other: 0 }
  for (const s of parseProgress(text)) out[stepKind(s.name)] += s.seconds ?? 0
  return out
}

// ---------------------------------------------------------------------------
// Build cache records (for pruning only what the bench created)

export interface CacheRecord {
  id: string
  createdAt: number
  description: string
  type: string
  inUse: boolean
}

/**
 * Build-cache records of the current builder (BUILDX_BUILDER, else the
 * engine's docker driver). buildx 0.2x prints them as JSON lines with whole
 * descriptions (`buildx du --format json`); older buildx has no --format
 * (and `--verbose` prints multi-line descriptions unparseably), so there the
 * docker driver's records come from `docker system df -v`.
 */
export async function listRecords(): Promise<CacheRecord[]> {
  const du = await sh(`docker buildx du --format json`, { allowFail: true })
  if (du.code === 0) {
    return du.stdout
      .split('\n')
      .filter(line => line.startsWith('{'))
      .map(line => record(JSON.parse(line) as RawRecord))
  }
  const { stdout } = await sh(`docker system df -v --format '{{json .BuildCache}}'`)
  const raw = JSON.parse(stdout.trim() || '[]') as RawRecord[] | null
  return (raw ?? []).map(record)
}

/** A record as either command prints it (`Type` from buildx du, `CacheType` from system df). */
interface RawRecord {
  ID: string
  CreatedAt: string
  Description: string
  Type?: string
  CacheType?: string
  InUse?: boolean | string
}

function record(r: RawRecord): CacheRecord {
  return {
    id: r.ID,
    createdAt: Date.parse(r.CreatedAt.replace(/^(\S+) (\d\d:\d\d:\d\d(?:\.\d+)?) \+0000 UTC$/, '$1T$2Z')),
    description: r.Description,
    type: r.Type ?? r.CacheType ?? '',
    inUse: String(r.InUse) === 'true'
  }
}

/** Prunes records one by one (the prune filter takes a single id). Returns how many went. */
export async function pruneRecords(ids: string[]): Promise<number> {
  let pruned = 0
  const queue = [...ids]
  const worker = async (): Promise<void> => {
    for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
      const r = await sh(`docker buildx prune --force --filter id=${q(id)}`, { allowFail: true })
      if (r.code === 0) pruned++
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()])
  return pruned
}

/** A cache-mount record's description ends with `with id "/<id>"` (or without the slash). */
export function isMountOf(description: string, id: string): boolean {
  return description.endsWith(`with id "/${id}"`) || description.endsWith(`with id "${id}"`)
}

/**
 * Prunes the cache-mount records of these ids only: a fresh builder for
 * the bench's mounts, while other jobs' caches on the engine stay.
 */
export async function pruneMounts(ids: string[]): Promise<void> {
  const records = await listRecords()
  await pruneRecords(records.filter(r => r.type === 'exec.cachemount' && ids.some(id => isMountOf(r.description, id))).map(r => r.id))
}

/** Other builds running on the engine right now (they make timings noisy and may prune our mounts). */
export async function foreignBuilds(): Promise<string[]> {
  const r = await sh(
    `for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null || true); case "$c" in *buildx\\ build*|*buildx\\ prune*|*jest*) echo "\${p#/proc/} $c";; esac; done`,
    { allowFail: true }
  )
  return r.stdout
    .split('\n')
    .filter(l => l.trim() !== '' && !l.includes('for p in /proc'))
    .map(l => l.slice(0, 160))
}

// ---------------------------------------------------------------------------
// Host-side tree signature (to compare two host trees, e.g. a per-mount
// extract against the reference tree)

export interface TreeSignature {
  /** Entries below the root, a root `buildstamp` left out (see dataset.ts signatureFunction). */
  entries: number
  /** Digest of name, type, size, owner, mode, link count (symlinks: target) of every non-root entry. */
  meta: string
  fileMtimes: string
  dirMtimes: string
  buildstamp: boolean
}

export async function hostTreeSignature(root: string): Promise<TreeSignature> {
  const { lstat, readdir, readlink } = await import('node:fs/promises')
  const { createHash } = await import('node:crypto')
  const meta: string[] = []
  const fileMtimes: string[] = []
  const dirMtimes: string[] = []
  let entries = 0
  let buildstamp = false
  const walk = async (rel: string): Promise<void> => {
    const names = await readdir(rel === '' ? root : `${root}/${rel}`)
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`
      if (path === 'buildstamp') {
        buildstamp = true
        continue
      }
      const st = await lstat(`${root}/${path}`)
      entries++
      const type = st.isSymbolicLink() ? 'l' : st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'o'
      if (type === 'l') {
        meta.push(`${path}|l|${st.uid}|${st.gid}|${await readlink(`${root}/${path}`)}`)
        continue
      }
      meta.push(`${path}|${type}|${type === 'f' ? st.size : 0}|${st.uid}|${st.gid}|${(st.mode & 0o7777).toString(8)}|${type === 'f' ? st.nlink : 0}`)
      ;(type === 'd' ? dirMtimes : fileMtimes).push(`${path}|${Math.floor(st.mtimeMs / 1000)}`)
      if (type === 'd') await walk(path)
    }
  }
  await walk('')
  const digest = (lines: string[]): string => createHash('sha256').update(lines.sort().join('\n')).digest('hex').slice(0, 12)
  return { entries, meta: digest(meta), fileMtimes: digest(fileMtimes), dirMtimes: digest(dirMtimes), buildstamp }
}
