// Runs the action's real (bundled) entry points against the bench's local
// cache service and reads the phase times out of their logs.
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { runStep, type StepResult } from '../../test-support/action-runner.js'
import { startCacheService, type CacheService } from '../../test-support/cache-service/server.js'
import { UTILITY_IMAGE } from '../../test-support/user-build.js'
import { stepSeconds, type StepKind } from './lib.js'

export interface ActionStep {
  entry: 'main' | 'post'
  seconds: number
  result: StepResult
  /** Peak RSS of the step's node process (KiB), when the probe reported it. */
  maxRssKiB?: number
  /** Bytes the step's process tree wrote to storage (the probe's write_bytes), where /proc reports it. */
  writeBytes?: number
  /** From "Extracted N mount(s), X in Y s (mode[; K unchanged since inject, not read][; D as delta(s) of what changed])". */
  extractSeconds?: number
  /** The mode of that line, e.g. "loopback stream" or "build exporter". */
  extractMode?: string
  /** The K of "; K unchanged since inject, not read" (0 without it). */
  extractNotRead?: number
  /** The D of "; D as delta(s) of what changed" (0 without it). */
  extractDeltas?: number
  /** From "Injected N mount(s), X in Y s (mode)". */
  injectSeconds?: number
  /** The "(mode)" of that line: "loopback stream" or "build context". */
  injectMode?: string
  /** From "Restore to ready: X s for N mount(s) (slowest restore Y s, inject Z s, overlapped)". */
  restoreToReady?: { seconds: number; slowestRestore: number; inject: number }
  /**
   * From "<id>: restored <key> (<match>[, base <key> + D delta(s)], <size>, N entries[, streamed into the build], Z s)";
   * `deltas` is D (0 for a full entry), `streamed` is there (true) when the entry went into the build as it downloaded.
   */
  restored: Array<{ id: string; key: string; seconds: number; entries: number; deltas: number; streamed?: true }>
  /**
   * From "<id>: saved <key> (<size>, Z s)", or for a delta entry "<id>: saved
   * <key> (delta S of <base>: <size> in C changed entries, R removed, Z s)".
   */
  saved: Array<{ id: string; key: string; seconds: number; delta?: SavedDelta }>
  /** Mounts logged "<id>: unchanged since restore (...)", with or without "; its manifest is the one inject left". */
  unchanged: string[]
  /** BuildKit step seconds of the step's generated build (its progress comes as debug lines). */
  buildSteps: Record<StepKind, number>
}

/** What a post step's log says of a delta it saved. */
export interface SavedDelta {
  /** S: the delta's place in its chain (1 for the first on a base). */
  sequence: number
  base: string
  /** C and R of the log line. */
  changedEntries: number
  removed: number
}

export interface ActionRunner {
  bundleDir: string
  workspace: string
  env: NodeJS.ProcessEnv
  inputs: Record<string, string>
  rssDir: string
}

/**
 * A local cache service and the action's steps pointed at it, in `work`
 * (workspace, runner temp, RSS reports): the bench mounts, no key files, the
 * utility image, buildx on `builder` (default: the current one), plus `extra` inputs.
 */
export async function startBenchRunner(
  work: string,
  bundleDir: string,
  mounts: string,
  builder?: string,
  extra: (service: CacheService) => Record<string, string> = () => ({})
): Promise<{ runner: ActionRunner; service: CacheService }> {
  const workspace = join(work, 'workspace')
  mkdirSync(workspace, { recursive: true })
  mkdirSync(join(work, 'rss'), { recursive: true })
  const service = await startCacheService({ dataDir: join(work, 'cache-service') })
  const runner: ActionRunner = {
    bundleDir,
    workspace,
    env: { ...service.env(), RUNNER_TEMP: join(work, 'runner-temp'), GITHUB_WORKSPACE: workspace },
    inputs: { mounts, 'key-files': '', 'utility-image': UTILITY_IMAGE, client: 'buildx', ...(builder ? { builder } : {}), ...extra(service) },
    rssDir: join(work, 'rss')
  }
  return { runner, service }
}

let counter = 0

export async function runActionStep(
  runner: ActionRunner,
  entry: 'main' | 'post',
  keyPrefix: string,
  state?: Record<string, string>
): Promise<ActionStep> {
  const rssFile = join(runner.rssDir, `rss-${++counter}.jsonl`)
  const probe = new URL('./rss-probe.cjs', import.meta.url).pathname
  const env = {
    ...runner.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${probe}`.trim(),
    BMC_BENCH_RSS_FILE: rssFile
  }
  const started = performance.now()
  const result = await runStep(entry, {
    bundleDir: runner.bundleDir,
    inputs: { ...runner.inputs, 'key-prefix': keyPrefix },
    env,
    cwd: runner.workspace,
    ...(state ? { state } : {})
  })
  const seconds = (performance.now() - started) / 1000
  if (result.exitCode !== 0 || result.errors.length > 0) {
    throw new Error(`${entry} step failed (exit ${result.exitCode}):\n${result.stdout.slice(-4000)}\n${result.stderr.slice(-2000)}`)
  }
  const step: ActionStep = { entry, seconds, result, ...parseActionLog(result.stdout) }
  if (existsSync(rssFile)) Object.assign(step, probeFigures(readFileSync(rssFile, 'utf8')))
  return step
}

/**
 * The probe's lines of one step (one per node process): the highest peak RSS,
 * and the highest write_bytes. Not their sum: a node process the step's node
 * started and reaped is already counted in its parent's write_bytes.
 */
export function probeFigures(text: string): Pick<ActionStep, 'maxRssKiB' | 'writeBytes'> {
  const lines = text
    .split('\n')
    .filter(l => l.trim() !== '')
    .map(l => JSON.parse(l) as { maxRssKiB: number; writeBytes?: number })
  const writes = lines.flatMap(l => (l.writeBytes === undefined ? [] : [l.writeBytes]))
  return {
    ...(lines.length > 0 ? { maxRssKiB: Math.max(...lines.map(l => l.maxRssKiB)) } : {}),
    ...(writes.length > 0 ? { writeBytes: Math.max(...writes) } : {})
  }
}

export function parseActionLog(stdout: string): ParsedLog {
  const lines = stdout.split('\n').map(l => l.replace(/\r$/, ''))
  const out: ParsedLog = { restored: [], saved: [], unchanged: [], buildSteps: stepSeconds('') }
  const debug: string[] = []
  for (const line of lines) {
    if (line.startsWith('::debug::')) {
      debug.push(line.slice('::debug::'.length).replace(/%0D/g, '\r').replace(/%0A/g, '\n').replace(/%25/g, '%'))
      continue
    }
    parseLine(line, out)
  }
  out.buildSteps = stepSeconds(debug.join('\n'))
  return out
}

type ParsedLog = Omit<ActionStep, 'entry' | 'seconds' | 'result' | 'maxRssKiB' | 'writeBytes'>

const EXTRACTED = /^Extracted \d+ mount\(s\), .* in ([\d.]+) s(?: \(([^;)]+)((?:; .*)?)\))?$/
const NOT_READ = /; (\d+) unchanged since inject, not read/
const AS_DELTAS = /; (\d+) as delta\(s\) of what changed/
const INJECTED = /^Injected \d+ mount\(s\), .* in ([\d.]+) s(?: \((.+)\))?$/
const READY =
  /^Restore to ready: ([\d.]+) s for \d+ mount\(s\) \(slowest restore ([\d.]+) s, inject ([\d.]+) s(?:, overlapped|, one after the other)?\)$/
const RESTORED = /^(.+): restored (\S+) \((.*), (\d+) entries(, streamed into the build)?, ([\d.]+) s\)$/
const CHAIN = /, base \S+ \+ (\d+) delta\(s\)/
const SAVED = /^(.+): saved (\S+) \((.*), ([\d.]+) s\)$/
const DELTA = /^delta (\d+) of (\S+): .* in (\d+) changed entries, (\d+) removed$/
const UNCHANGED = /^(.+?): unchanged since restore\b/

/** One (non-debug) log line of a step into `out`. */
function parseLine(line: string, out: ParsedLog): void {
  let m = EXTRACTED.exec(line)
  if (m) {
    out.extractSeconds = Number(m[1])
    if (m[2]) out.extractMode = m[2]
    out.extractNotRead = Number(NOT_READ.exec(m[3] ?? '')?.[1] ?? 0)
    out.extractDeltas = Number(AS_DELTAS.exec(m[3] ?? '')?.[1] ?? 0)
  }
  m = INJECTED.exec(line)
  if (m) {
    out.injectSeconds = Number(m[1])
    if (m[2]) out.injectMode = m[2]
  }
  m = READY.exec(line)
  if (m) out.restoreToReady = { seconds: Number(m[1]), slowestRestore: Number(m[2]), inject: Number(m[3]) }
  m = RESTORED.exec(line)
  if (m) {
    const deltas = Number(CHAIN.exec(m[3] as string)?.[1] ?? 0)
    out.restored.push({
      id: m[1] as string,
      key: m[2] as string,
      entries: Number(m[4]),
      seconds: Number(m[6]),
      deltas,
      ...(m[5] !== undefined ? { streamed: true as const } : {})
    })
  }
  m = SAVED.exec(line)
  if (m) {
    const d = DELTA.exec(m[3] as string)
    const delta = d ? { sequence: Number(d[1]), base: d[2] as string, changedEntries: Number(d[3]), removed: Number(d[4]) } : undefined
    out.saved.push({ id: m[1] as string, key: m[2] as string, seconds: Number(m[4]), ...(delta ? { delta } : {}) })
  }
  m = UNCHANGED.exec(line)
  if (m) out.unchanged.push(m[1] as string)
}
