// `npm run bench -- --restore-stream`: main's restore with each entry streamed
// into the inject build as it downloads, against the same restore downloading
// every entry to a file under RUNNER_TEMP first (BUILDKIT_MOUNT_CACHE_STREAM_RESTORE=false),
// on the real engine with the stream client of the local cache service (v2).
// The bench's tree (dataset.ts, --size-mib / --files) is saved once through
// the action (main on a miss, post), then ROUNDS rounds (--repeat) of:
//
//   prune the mounts → main, file mode → prune the mounts → main, streamed
//
// Every main must restore every mount (streamed or not, as asked) and leave
// the generated tree in the builder (content signature, dataset.ts); anything
// else fails the bench. The table gives, medians over the rounds:
//   1. streamed restore to ready × the file mode's inject alone: that inject
//      build reads archives already on the runner's disk, so it is the least
//      a restore that overlaps its downloads with the inject can take;
//   2. streamed restore to ready × the file mode's restore to ready;
//   3. bytes main's process tree wrote to storage (rss-probe.cjs), × the tree,
//      and the peak growth of RUNNER_TEMP (sampled), both modes;
//   4. the peak RSS of main's node process, both modes.
import { randomUUID } from 'node:crypto'
import { rmSync } from 'node:fs'
import { readdir, lstat } from 'node:fs/promises'
import { join } from 'node:path'

import { UTILITY_IMAGE } from '../../test-support/user-build.js'
import { runActionStep, startBenchRunner, type ActionRunner, type ActionStep } from './action.js'
import {
  actionMountsInput,
  benchMounts,
  generatorDockerfile,
  parseSignatures,
  signatureDockerfile,
  type BenchMount,
  type DatasetPlan,
  type Signature
} from './dataset.js'
import { cacheOnlyBuilder, median, pruneMounts } from './lib.js'

/** Rounds without --repeat. */
export const ROUNDS = 2
/** The target of streamed restore to ready × the file mode's inject alone. */
export const STREAM_TARGET = 1.1

export interface RestoreStreamOptions {
  sizeMiB: number
  plan: DatasetPlan
  rounds: number
  builder?: string
}

export interface RestoreStreamContext {
  /** Run id: in every mount id, key and record the bench creates. */
  run: string
  work: string
  bundleDir: string
  log: (text: string) => void
}

export type RestoreMode = 'file' | 'streamed'

/** One main step's figures. */
export interface RestoreSample {
  mode: RestoreMode
  round: number
  seconds: number
  /** "Restore to ready", its slowest restore and inject seconds. */
  ready: number
  slowestRestore: number
  inject: number
  /** Each mount's restore seconds (its "restored" line), by mount name. */
  restores: Record<string, number>
  /** write_bytes of main's process tree (undefined where /proc has no io). */
  writeBytes?: number
  /** Peak growth of RUNNER_TEMP while main ran (allocated bytes, sampled). */
  runnerTempPeak: number
  maxRssKiB?: number
}

export interface RestoreStreamFigures {
  sizeMiB: number
  files: number
  /** The tree as main restores it (`restored-bytes`, all mounts). */
  treeBytes: number
  samples: RestoreSample[]
  fidelity: string[]
}

export interface RestoreStreamResult {
  figures: RestoreStreamFigures
  text: string
}

const SIGNATURE = { content: true }
const FILE_MODE = { BUILDKIT_MOUNT_CACHE_STREAM_RESTORE: 'false' }

export async function runRestoreStreamBench(ctx: RestoreStreamContext, opts: RestoreStreamOptions): Promise<RestoreStreamResult> {
  const { log, run } = ctx
  const { plan } = opts
  const mounts = benchMounts(run)
  const ids = mounts.map(m => m.id)
  const work = join(ctx.work, 'restore-stream')
  const { runner, service } = await startBenchRunner(work, ctx.bundleDir, actionMountsInput(mounts), opts.builder)
  const fileRunner: ActionRunner = { ...runner, env: { ...runner.env, ...FILE_MODE } }
  const runnerTemp = runner.env.RUNNER_TEMP as string
  const prefix = `bench-${run}-restore`
  const build = cacheOnlyBuilder(work)
  const signatures = async (): Promise<Map<string, Signature>> =>
    parseSignatures(await build('signature', signatureDockerfile(UTILITY_IMAGE, mounts, ids, randomUUID(), SIGNATURE)))
  const samples: RestoreSample[] = []
  const fidelity: string[] = []
  let treeBytes = 0
  try {
    log(`restore-stream scenario: ${opts.sizeMiB} MiB, ${plan.files} files in 3 mounts; ${opts.rounds} round(s) of main in file mode, then streamed`)
    await pruneMounts(ids)
    const miss = await runActionStep(runner, 'main', prefix)
    if (miss.result.outputs['cache-hit'] !== 'false') throw new Error('main on an empty cache service reported a hit')
    log('generating the tree with a user build')
    const original = parseSignatures(await build('generate', generatorDockerfile(UTILITY_IMAGE, mounts, plan, randomUUID(), SIGNATURE)))
    if (mounts.some(m => original.get(m.name)?.content === undefined)) throw new Error('the generator build printed no content signatures')
    log('post (full save)')
    const post = await runActionStep(runner, 'post', prefix, miss.result.state)
    const unsaved = mounts.filter(m => !post.saved.some(s => s.id === m.id))
    if (unsaved.length > 0) throw new Error(`post did not save ${unsaved.map(m => m.id).join(', ')}:\n${post.result.stdout.slice(-3000)}`)

    for (let round = 1; round <= opts.rounds; round++) {
      for (const mode of ['file', 'streamed'] as const) {
        log(`round ${round}/${opts.rounds}: prune the mounts, main (${mode === 'file' ? 'BUILDKIT_MOUNT_CACHE_STREAM_RESTORE=false' : 'streamed'})`)
        await pruneMounts(ids)
        const sampler = sampleDirPeak(runnerTemp)
        let main: ActionStep
        try {
          main = await runActionStep(mode === 'file' ? fileRunner : runner, 'main', prefix)
        } finally {
          sampler.stop()
        }
        const sample = restoreSample(main, mode, round, mounts, await sampler.peak)
        treeBytes = restoredBytes(main)
        if (treeBytes !== plan.totalBytes)
          throw new Error(`round ${round}, ${mode}: main restored ${treeBytes} bytes, the tree holds ${plan.totalBytes}`)
        compare(`round ${round}, ${mode}`, await signatures(), original, fidelity)
        samples.push(sample)
        log(
          `  restore to ready ${sample.ready.toFixed(1)} s (slowest restore ${sample.slowestRestore.toFixed(1)} s, inject ${sample.inject.toFixed(1)} s), wrote ${mib(sample.writeBytes)} MiB`
        )
      }
    }
    const figures: RestoreStreamFigures = { sizeMiB: opts.sizeMiB, files: plan.files, treeBytes, samples, fidelity }
    return { figures, text: restoreStreamReport(figures) }
  } finally {
    await service.close().catch(() => undefined)
    rmSync(work, { recursive: true, force: true })
  }
}

/** A main step's figures; throws unless it restored every mount in `mode` and logged its restore to ready, cleanly. */
function restoreSample(main: ActionStep, mode: RestoreMode, round: number, mounts: BenchMount[], runnerTempPeak: number): RestoreSample {
  const wrong = mounts.filter(m => {
    const r = main.restored.find(x => x.id === m.id)
    return r === undefined || r.deltas !== 0 || (r.streamed === true) !== (mode === 'streamed')
  })
  const ready = main.restoreToReady
  if (main.result.outputs['cache-hit'] !== 'true' || wrong.length > 0 || ready === undefined || main.result.warnings.length > 0) {
    throw new Error(
      `round ${round}, ${mode}: main did not restore every full entry ${mode === 'streamed' ? 'streamed into the build' : 'from a file'} cleanly (${wrong.map(m => m.id).join(', ') || 'no restore to ready'}):\n${main.result.stdout.slice(-3000)}`
    )
  }
  const restores = Object.fromEntries(mounts.map(m => [m.name, main.restored.find(x => x.id === m.id)?.seconds ?? Number.NaN]))
  return {
    mode,
    round,
    seconds: main.seconds,
    ready: ready.seconds,
    slowestRestore: ready.slowestRestore,
    inject: ready.inject,
    restores,
    ...(main.writeBytes !== undefined ? { writeBytes: main.writeBytes } : {}),
    runnerTempPeak,
    ...(main.maxRssKiB !== undefined ? { maxRssKiB: main.maxRssKiB } : {})
  }
}

/** Sum of the mounts' `restored-bytes`. */
function restoredBytes(main: ActionStep): number {
  const mounts = JSON.parse(main.result.outputs.mounts ?? '[]') as Array<{ 'restored-bytes'?: number }>
  return mounts.reduce((sum, m) => sum + (m['restored-bytes'] ?? 0), 0)
}

/** Fails the bench unless the builder's mounts are the generated tree (an empty mount: another job pruned the engine). */
function compare(label: string, got: Map<string, Signature>, want: Map<string, Signature>, fidelity: string[]): void {
  const problems: string[] = []
  for (const [name, w] of want) {
    const h = got.get(name)
    if (h === undefined) problems.push(`${name}: no signature`)
    else if (h.entries === 0) problems.push(`${name}: empty (did another job prune the builder?)`)
    else
      for (const field of ['entries', 'meta', 'fileMtimes', 'dirMtimes', 'content'] as const)
        if (h[field] !== w[field]) problems.push(`${name}: ${field} differ`)
  }
  if (problems.length > 0) throw new Error(`fidelity: ${label}: the builder's mounts are not the generated tree: ${problems.join('; ')}`)
  fidelity.push(label)
}

/**
 * Samples the allocated bytes under `dir` every `everyMs` until stop(); `peak`
 * is the most it grew over what it held at the start. A file main writes and
 * deletes between two samples goes unseen: write_bytes is the exact figure,
 * this one only says where the bytes went.
 */
export function sampleDirPeak(dir: string, everyMs = 200): { stop: () => void; peak: Promise<number> } {
  let stopped = false
  let wake: (() => void) | undefined
  const peak = (async () => {
    const base = await allocatedBytes(dir)
    let most = 0
    while (!stopped) {
      most = Math.max(most, (await allocatedBytes(dir)) - base)
      await new Promise<void>(resolve => {
        wake = resolve
        setTimeout(resolve, everyMs)
      })
    }
    return Math.max(most, (await allocatedBytes(dir)) - base)
  })()
  return {
    stop: () => {
      stopped = true
      wake?.()
    },
    peak
  }
}

/** Allocated bytes of the files under `dir` (0 where it does not exist; files that vanish mid-walk count 0). */
async function allocatedBytes(dir: string): Promise<number> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 0
  }
  let sum = 0
  for (const name of names) {
    const path = join(dir, name)
    const st = await lstat(path).catch(() => undefined)
    if (st === undefined) continue
    sum += st.isDirectory() ? await allocatedBytes(path) : st.blocks * 512
  }
  return sum
}

const mib = (bytes: number | undefined): string => (bytes === undefined ? '?' : (bytes / 1024 ** 2).toFixed(0))

/** The scenario's table: per-round figures and medians of both modes, then the ratios. */
export function restoreStreamReport(f: RestoreStreamFigures): string {
  const of = (mode: RestoreMode): RestoreSample[] => f.samples.filter(s => s.mode === mode)
  const file = of('file')
  const streamed = of('streamed')
  const med = (samples: RestoreSample[], pick: (s: RestoreSample) => number | undefined): number | undefined => {
    const values = samples.flatMap(s => {
      const v = pick(s)
      return v === undefined ? [] : [v]
    })
    return values.length > 0 ? median(values) : undefined
  }
  const secs = (v: number | undefined): string => (v === undefined ? '?' : `${v.toFixed(1)} s`)
  const tree = (v: number | undefined): string => (v === undefined ? '?' : `${mib(v)} MiB (${(v / f.treeBytes).toFixed(2)} × tree)`)
  const rss = (v: number | undefined): string => (v === undefined ? '?' : `${(v / 1024).toFixed(0)} MiB`)
  const rows: Array<[string, (s: RestoreSample) => number | undefined, (v: number | undefined) => string]> = [
    ['main step', s => s.seconds, secs],
    ['restore to ready', s => s.ready, secs],
    ['slowest restore', s => s.slowestRestore, secs],
    ['inject (log "Restore to ready")', s => s.inject, secs],
    ['restore to ready − slowest restore', s => s.ready - s.slowestRestore, secs],
    ['bytes written to storage by main (write_bytes)', s => s.writeBytes, tree],
    ['peak growth of RUNNER_TEMP (sampled)', s => s.runnerTempPeak, tree],
    ['peak RSS of main', s => s.maxRssKiB, rss]
  ]
  const cell = (samples: RestoreSample[], pick: (s: RestoreSample) => number | undefined, show: (v: number | undefined) => string): string =>
    `${show(med(samples, pick))}${samples.length > 1 ? ` (${samples.map(s => show(pick(s)).replace(/ \(.*\)$/, '')).join(', ')})` : ''}`
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || b === 0 ? undefined : a / b
  const fmt = (v: number | undefined): string => (v === undefined ? '?' : v.toFixed(2))
  const vsInject = ratio(
    med(streamed, s => s.ready),
    med(file, s => s.inject)
  )
  const vsReady = ratio(
    med(streamed, s => s.ready),
    med(file, s => s.ready)
  )
  const perMount = (samples: RestoreSample[]): string =>
    samples
      .map(
        s =>
          `round ${s.round}: ${Object.entries(s.restores)
            .map(([m, v]) => `${m} ${v.toFixed(1)} s`)
            .join(', ')}`
      )
      .join('; ')
  return [
    '',
    `Streamed restore: ${f.sizeMiB} MiB, ${f.files} files in 3 mounts (${mib(f.treeBytes)} MiB restored); ${file.length} round(s) of main in file mode (BUILDKIT_MOUNT_CACHE_STREAM_RESTORE=false) then streamed, each into a builder without the mounts; medians (each round in brackets).`,
    '',
    '| main, restoring every mount | file mode | streamed |',
    '| --- | --- | --- |',
    ...rows.map(([label, pick, show]) => `| ${label} | ${cell(file, pick, show)} | ${cell(streamed, pick, show)} |`),
    '',
    '| ratio | value | target | |',
    '| --- | --- | --- | --- |',
    `| streamed restore to ready × file mode's inject alone | ${fmt(vsInject)} | ≤ ${STREAM_TARGET} | ${vsInject !== undefined && vsInject <= STREAM_TARGET ? 'met' : 'missed'} |`,
    `| streamed restore to ready × file mode's restore to ready | ${fmt(vsReady)} | | |`,
    `| bytes written by main, streamed × file mode | ${fmt(
      ratio(
        med(streamed, s => s.writeBytes),
        med(file, s => s.writeBytes)
      )
    )} | | |`,
    '',
    `- each mount's restore (its "restored" line), file mode: ${perMount(file)}`,
    `- streamed (until the inject stream settled it): ${perMount(streamed)}`,
    `- fidelity: the builder's mounts were the generated tree (content, owners, modes, mtimes, links) after ${f.fidelity.length} of ${f.samples.length} mains`,
    "- file mode's inject starts with the first downloaded archive and takes the others as they finish: its seconds include any wait for the later downloads (restore to ready − slowest restore is what it took after the last one)"
  ].join('\n')
}
