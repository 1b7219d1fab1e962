// `npm run bench -- --changed PERCENT`: delta saves on the real engine, with
// the real cache client and the local cache service. The bench's tree
// (dataset.ts, --size-mib / --files) is saved once in full, then each of
// RUNS changed runs starts from a fresh builder as a CI job would:
//
//   prune the mounts → action main (restore) → a user build that changes
//   PERCENT of the files (delta-plan.ts) → action post (save)
//
// and the table gives, from one bench run:
//   1. the bytes the first changed run's post uploads, × the mount;
//   2. that post (extract + save) × the per-mount method's extract of the same tree;
//   3. main restoring a chain of CHAIN_AT deltas × main restoring one full entry
//      of the same tree (saved under a key prefix of its own);
//   4. the bytes of the entries the service keeps for the mounts after the runs, × the mount;
//   5. fidelity: at every restore, the tree's signature (dataset.ts, with content
//      and hardlink groups) is the one the previous run left; any difference fails the bench.
//
// --delete-superseded hands the action `delete-superseded: true` (compaction
// then deletes the chain it replaces); without it the table shows what is
// kept when nothing is deleted.
import { randomUUID } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'

import type { CacheService } from '../../test-support/cache-service/server.js'
import { UTILITY_IMAGE } from '../../test-support/user-build.js'
import { runActionStep, startBenchRunner, type ActionRunner, type ActionStep } from './action.js'
import {
  actionMountsInput,
  benchMounts,
  cacheFlag,
  generatorDockerfile,
  mountOptions,
  parseSignatures,
  signatureDockerfile,
  signatureFunction,
  type BenchMount,
  type DatasetPlan,
  type Signature
} from './dataset.js'
import { changeCounts, changeScript, TreeModel, type TreeChange } from './delta-plan.js'
import { cacheOnlyBuilder, pruneMounts } from './lib.js'
import { type CacheMap, type PerMount } from './per-mount.js'
import { deltaReport, type DeltaFigures, type DeltaRun } from './report.js'

/** Changed runs after the first, full save. */
export const RUNS = 10
/** The run whose main restores the chain measured against a full entry (its chain then has this many deltas). */
export const CHAIN_AT = 5

export interface DeltaBenchOptions {
  percent: number
  sizeMiB: number
  plan: DatasetPlan
  deleteSuperseded: boolean
  builder?: string
}

export interface DeltaBenchContext {
  /** Run id: in every mount id, key and record the bench creates. */
  run: string
  work: string
  bundleDir: string
  perMount: PerMount
  log: (text: string) => void
}

export interface DeltaResult {
  figures: DeltaFigures
  text: string
}

const SIGNATURE = { content: true }

export async function runDeltaBench(ctx: DeltaBenchContext, opts: DeltaBenchOptions): Promise<DeltaResult> {
  const { log } = ctx
  const { plan } = opts
  const mounts = benchMounts(ctx.run)
  const ids = mounts.map(m => m.id)
  const work = join(ctx.work, 'delta')
  // The job token a workflow passes by default (`${{ github.token }}`): here the local service's.
  const { runner, service } = await startBenchRunner(work, ctx.bundleDir, actionMountsInput(mounts), opts.builder, svc =>
    opts.deleteSuperseded ? { 'delete-superseded': 'true', 'github-token': svc.githubToken } : ({} as Record<string, string>)
  )
  const prefix = `bench-${ctx.run}-delta`
  const fullPrefix = `bench-${ctx.run}-full`
  const model = new TreeModel(
    plan,
    mounts.map(m => m.name)
  )
  const counts = changeCounts(plan.files, opts.percent)
  const build = cacheOnlyBuilder(work)
  const signatures = async (): Promise<Map<string, Signature>> =>
    parseSignatures(await build('signature', signatureDockerfile(UTILITY_IMAGE, mounts, ids, randomUUID(), SIGNATURE)))
  const fidelity: string[] = []
  const runs: DeltaRun[] = []
  try {
    log(
      `delta scenario: ${opts.sizeMiB} MiB, ${plan.files} files in 3 mounts; ${RUNS} changed runs, each adding ${counts.added}, rewriting ${counts.rewritten} and removing ${counts.removed} files`
    )
    // Run 0: the tree appears in an empty builder and post saves it in full.
    await pruneMounts(ids)
    const first = await runActionStep(runner, 'main', prefix)
    if (first.result.outputs['cache-hit'] !== 'false') throw new Error('main on an empty cache service reported a hit')
    log('run 0: generating the tree with a user build')
    let left = parseSignatures(await build('generate', generatorDockerfile(UTILITY_IMAGE, mounts, plan, randomUUID(), SIGNATURE)))
    expectSignatures(left, mounts, 'the generator build')
    log('run 0: post (full save)')
    runs.push(await postRun(service, runner, prefix, 0, first, undefined, mounts))

    let perMountExtract: number | undefined
    let full: { main: ActionStep } | undefined
    for (let run = 1; run <= RUNS; run++) {
      if (run === CHAIN_AT + 1) {
        // One full entry of the tree the chain holds, restored alone into a fresh builder.
        log(`run ${run}: main restoring the full entry of the same tree (key prefix ${fullPrefix})`)
        await pruneMounts(ids)
        const main = await runActionStep(runner, 'main', fullPrefix)
        expectRestored(main, mounts, 0, 'the full entry')
        compare(`full entry restored (run ${run})`, await signatures(), left, fidelity)
        full = { main }
      }
      log(`run ${run}: prune, main (restore)`)
      await pruneMounts(ids)
      const main = await runActionStep(runner, 'main', prefix)
      expectRestored(main, mounts, undefined, `run ${run}`)
      log(`run ${run}: user build (${counts.added} added, ${counts.rewritten} rewritten, ${counts.removed} removed)`)
      const change = model.next(counts)
      const out = parseSignatures(await build('change', changeDockerfile(mounts, change)))
      const before = renamed(out, 'before.')
      compare(`run ${run}: restored (${chainLengths(main)})`, before, left, fidelity)
      const after = renamed(out, 'after.')
      expectSignatures(after, mounts, `run ${run}'s user build`)
      for (const m of mounts) {
        const want =
          (before.get(m.name)?.entries ?? 0) +
          change.added.filter(f => f.mount === m.name).length -
          change.removed.filter(f => f.mount === m.name).length
        if (after.get(m.name)?.entries !== want)
          throw new Error(`run ${run}: ${m.name} has ${after.get(m.name)?.entries} entries after the change, the bench's record wants ${want}`)
      }
      left = after
      log(`run ${run}: post (save)`)
      runs.push(await postRun(service, runner, prefix, run, main, change, mounts))

      if (run === 1) {
        log('per-mount extract of the same tree (buildkit-cache-dance method)')
        perMountExtract = await perMountExtractSeconds(ctx.perMount, mounts, join(work, 'dance-out'))
      }
      if (run === CHAIN_AT) {
        log(`run ${run}: main + post under ${fullPrefix}: one full entry of this tree`)
        const fullMain = await runActionStep(runner, 'main', fullPrefix)
        const fullPost = await runActionStep(runner, 'post', fullPrefix, fullMain.result.state)
        if (fullPost.saved.length !== mounts.length || fullPost.saved.some(s => s.delta !== undefined))
          throw new Error(`the full save under ${fullPrefix} did not save every mount in full:\n${fullPost.result.stdout.slice(-3000)}`)
      }
    }

    // After the chain: one more restore into a fresh builder, compared with what the last run left.
    log('after the runs: prune, main, signature of the restored tree')
    await pruneMounts(ids)
    const last = await runActionStep(runner, 'main', prefix)
    expectRestored(last, mounts, undefined, 'the last restore')
    compare(`after ${RUNS} runs: restored (${chainLengths(last)})`, await signatures(), left, fidelity)

    const kept = service.entries().filter(e => e.key.startsWith(`${prefix}-`))
    const keptByMount = Object.fromEntries(mounts.map(m => [m.name, kept.filter(e => e.key.startsWith(`${prefix}-${m.id}-`)).length]))
    if (perMountExtract === undefined || full === undefined) throw new Error('the scenario ended before its measurements')
    const chainRun = runs[CHAIN_AT + 1] as DeltaRun
    const figures: DeltaFigures = {
      sizeMiB: opts.sizeMiB,
      files: plan.files,
      percent: opts.percent,
      counts,
      runs,
      perMountExtractSeconds: perMountExtract,
      fullMain: stepFigures(full.main),
      chainRun: chainRun.run,
      keptBytes: kept.reduce((sum, e) => sum + e.size, 0),
      keptEntries: kept.length,
      keptByMount,
      // A delta's key is its base's and `-d<n>-<hash>`; every other entry is a full one.
      keptFull: kept.filter(e => !/-d\d+-[0-9a-f]{12}$/.test(e.key)).length,
      treeBytesAtEnd: restoredBytes(last),
      fidelity,
      deleteSuperseded: opts.deleteSuperseded
    }
    return { figures, text: deltaReport(figures) }
  } finally {
    await service.close().catch(() => undefined)
    rmSync(work, { recursive: true, force: true })
  }
}

/** Runs post after `main` and records the run: what it uploaded (entries new in the service) and how each mount was saved. */
async function postRun(
  service: CacheService,
  runner: ActionRunner,
  prefix: string,
  run: number,
  main: ActionStep,
  change: TreeChange | undefined,
  mounts: BenchMount[]
): Promise<DeltaRun> {
  const before = new Set(service.entries().map(e => e.key))
  const post = await runActionStep(runner, 'post', prefix, main.result.state)
  const uploaded = service.entries().filter(e => !before.has(e.key))
  const saves = Object.fromEntries(
    mounts.map(m => {
      const s = post.saved.find(x => x.id === m.id)
      return [m.name, s === undefined ? 'unchanged' : s.delta ? `d${s.delta.sequence}` : 'full']
    })
  )
  if (run > 0 && Object.values(saves).every(s => s === 'unchanged'))
    throw new Error(`run ${run}: post saved nothing:\n${post.result.stdout.slice(-3000)}`)
  return {
    run,
    main: stepFigures(main),
    post: stepFigures(post),
    treeBytes: restoredBytes(main),
    uploadedBytes: uploaded.reduce((sum, e) => sum + e.size, 0),
    uploadedEntries: uploaded.length,
    newBytes: change?.newBytes ?? 0,
    saves
  }
}

function stepFigures(step: ActionStep): DeltaRun['main'] {
  return {
    seconds: step.seconds,
    ...(step.extractSeconds !== undefined ? { extract: step.extractSeconds } : {}),
    ...(step.injectSeconds !== undefined ? { inject: step.injectSeconds } : {}),
    ...(step.restoreToReady ? { ready: step.restoreToReady.seconds, slowestRestore: step.restoreToReady.slowestRestore } : {}),
    deltas: step.restored.map(r => r.deltas),
    buildRun: step.buildSteps.run
  }
}

/** Sum of the mounts' `restored-bytes` (the tree main restored, as the action counts it); 0 on a miss. */
function restoredBytes(main: ActionStep): number {
  const mounts = JSON.parse(main.result.outputs.mounts ?? '[]') as Array<{ 'restored-bytes'?: number }>
  return mounts.reduce((sum, m) => sum + (m['restored-bytes'] ?? 0), 0)
}

function chainLengths(main: ActionStep): string {
  const deltas = [...new Set(main.restored.map(r => r.deltas))]
  return deltas.length === 1 && deltas[0] === 0 ? 'full entries' : `base + ${main.restored.map(r => r.deltas).join('/')} delta(s)`
}

function expectRestored(main: ActionStep, mounts: BenchMount[], deltas: number | undefined, what: string): void {
  const restored = mounts.filter(m => main.restored.some(r => r.id === m.id && (deltas === undefined || r.deltas === deltas)))
  if (main.result.outputs['cache-hit'] !== 'true' || restored.length !== mounts.length || main.result.warnings.length > 0) {
    throw new Error(
      `${what}: main did not restore every mount${deltas === undefined ? '' : ` with ${deltas} deltas`} cleanly:\n${main.result.stdout.slice(-3000)}`
    )
  }
}

function expectSignatures(sigs: Map<string, Signature>, mounts: BenchMount[], what: string): void {
  const missing = mounts.filter(m => sigs.get(m.name)?.content === undefined)
  if (missing.length > 0) throw new Error(`${what} printed no signature of ${missing.map(m => m.name).join(', ')}`)
}

/** The signatures named `<prefix><mount>`, by mount. */
function renamed(sigs: Map<string, Signature>, prefix: string): Map<string, Signature> {
  return new Map([...sigs].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]))
}

/** Records a restore that gave the tree the previous run left; anything else fails the bench, naming what differs. */
function compare(label: string, got: Map<string, Signature>, want: Map<string, Signature>, fidelity: string[]): void {
  const problems: string[] = []
  for (const [name, w] of want) {
    const h = got.get(name)
    if (!h) {
      problems.push(`${name}: no signature`)
      continue
    }
    const fields: Array<[keyof Signature, string]> = [
      ['entries', 'entry count'],
      ['meta', 'names/types/sizes/owners/modes/link counts/symlink targets'],
      ['fileMtimes', 'file mtimes'],
      ['dirMtimes', 'directory mtimes'],
      ['content', 'content or hardlink groups']
    ]
    for (const [field, what] of fields) if (h[field] !== w[field]) problems.push(`${name}: ${what} differ`)
  }
  if (problems.length > 0) throw new Error(`fidelity: ${label}: the tree is not the one the previous run left: ${problems.join('; ')}`)
  fidelity.push(label)
}

/** The user build of a changed run: the signatures of the restored tree, the change, the signatures after it. */
function changeDockerfile(mounts: BenchMount[], change: TreeChange): string {
  const targets = Object.fromEntries(mounts.map(m => [m.name, m.target])) as Record<BenchMount['name'], string>
  const script = [
    'set -eu',
    `echo ${randomUUID()} > /dev/null`,
    signatureFunction(SIGNATURE),
    ...mounts.map(m => `echo "SIG before.${m.name} $(sig ${m.target})"`),
    ...changeScript(change, targets),
    ...mounts.map(m => `echo "SIG after.${m.name} $(sig ${m.target})"`)
  ]
  return [`FROM ${UTILITY_IMAGE}`, `RUN ${mounts.map(m => cacheFlag(m)).join(' \\\n    ')} <<'EOS'`, ...script, 'EOS', ''].join('\n')
}

/** The per-mount method's extract of the three mounts into `out` (then deleted): its seconds. */
async function perMountExtractSeconds(perMount: PerMount, mounts: BenchMount[], out: string): Promise<number> {
  await mkdir(out, { recursive: true })
  try {
    const map: CacheMap = Object.fromEntries(mounts.map(m => [join(out, m.name), Object.fromEntries(mountOptions(m))]))
    const timings = await perMount.extractCaches(map)
    return timings.reduce((sum, t) => sum + t.seconds, 0)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}
