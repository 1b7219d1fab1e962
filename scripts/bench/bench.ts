// `npm run bench` (issue 9): what the action's phases cost on a real engine,
// next to the floor (the least work that moves the same tree) and to the
// per-mount method of buildkit-cache-dance, all measured in the same run.
//
//   npx tsx scripts/bench/bench.ts [--size-mib 1024] [--files 20000] [--quick]
//       [--repeat 1] [--json FILE] [--private-engine] [--prune-all]
//
// --quick        64 MiB / 2,000 files, a sanity run
// --repeat N     N rounds; every figure is the median of its N samples
// --json FILE    also write every sample and the table as JSON
// --private-engine  run on a private dockerd (same binary, own socket and data
//                root, deleted at the end) instead of the shared engine: use it
//                when other jobs build or prune on the shared one (see private-engine.ts)
// --prune-all    finish with `docker buildx prune --all --force` (default: prune
//                only the records this run created; other jobs may share the engine)
//
// Other jobs that `buildx prune --all` the shared engine empty the bench's
// mounts; the bench notices (every move is checked) and repeats the round on
// fresh data, up to three times.
//
// The machine is noisy: read the ratios, not the seconds.
import { randomBytes, randomUUID } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { bundleAction, REPO_ROOT } from '../../test-support/action-runner.js'
import { startCacheService, type CacheService } from '../../test-support/cache-service/server.js'
import { UTILITY_IMAGE } from '../../test-support/user-build.js'
import { runActionStep, type ActionRunner, type ActionStep } from './action.js'
import {
  actionMountsInput,
  benchMounts,
  generatorDockerfile,
  mountOptions,
  parseSignatures,
  planDataset,
  signatureDockerfile,
  type BenchMount,
  type DatasetPlan,
  type Signature
} from './dataset.js'
import { EXTRACT_VARIANTS, extractFloor, hostFloors, INJECT_VARIANTS, injectFloor } from './floor.js'
import { foreignBuilds, hostTreeSignature, listRecords, median, pruneRecords, q, sh, type CacheRecord, type TreeSignature } from './lib.js'
import { PerMount, type CacheMap, type DanceMountTiming } from './per-mount.js'
import { startPrivateEngine, type PrivateEngine } from './private-engine.js'

// ---------------------------------------------------------------------------
// Options

interface Options {
  sizeMiB: number
  files: number
  repeat: number
  json?: string
  pruneAll: boolean
  privateEngine: boolean
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { sizeMiB: 1024, files: 20000, repeat: 1, pruneAll: false, privateEngine: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${arg} needs a value`)
      return v
    }
    const positive = (v: string): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${arg} needs a positive integer, got ${v}`)
      return n
    }
    if (arg === '--quick') Object.assign(opts, { sizeMiB: 64, files: 2000 })
    else if (arg === '--size-mib') opts.sizeMiB = positive(value())
    else if (arg === '--files') opts.files = positive(value())
    else if (arg === '--repeat') opts.repeat = positive(value())
    else if (arg === '--json') opts.json = value()
    else if (arg === '--prune-all') opts.pruneAll = true
    else if (arg === '--private-engine') opts.privateEngine = true
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: bench.ts [--size-mib N] [--files N] [--quick] [--repeat N] [--json FILE] [--private-engine] [--prune-all]')
      process.exit(0)
    } else throw new Error(`unknown argument ${arg}`)
  }
  return opts
}

// ---------------------------------------------------------------------------
// Samples: every measured figure by name, one sample per round

class Samples {
  readonly values = new Map<string, number[]>()
  /** How our extract ran (the "(mode)" of its log line). */
  readonly modes: string[] = []
  add(name: string, seconds: number | undefined): void {
    if (seconds === undefined || Number.isNaN(seconds)) return
    const list = this.values.get(name) ?? []
    list.push(seconds)
    this.values.set(name, list)
  }
  get(name: string): number | undefined {
    const list = this.values.get(name)
    return list && list.length > 0 ? median(list) : undefined
  }
  merge(other: Samples): void {
    for (const [name, list] of other.values) for (const v of list) this.add(name, v)
    for (const m of other.modes) if (!this.modes.includes(m)) this.modes.push(m)
  }
  need(name: string): number {
    const v = this.get(name)
    if (v === undefined) throw new Error(`no sample for ${name}`)
    return v
  }
}

const log = (text: string): void => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`)

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const sizeBytes = opts.sizeMiB * 1024 * 1024
  const plan = planDataset(sizeBytes, opts.files)

  const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { stdio: ['ignore', 'ignore', 'inherit'] })
  if (engine.status !== 0) throw new Error('scripts/engine.sh start failed')

  const work = mkdtempSync(join(tmpdir(), 'bmc-bench-'))
  const avail = Number((await sh(`df -B1 --output=avail ${q(work)} | tail -1`)).stdout.trim())
  // Per round: host tree, tar context files, per-mount copies, cache entries,
  // and the builder's copies (mounts, floor injects, exported layers).
  const needed = 16 * plan.totalBytes + 2 * 1024 ** 3
  if (avail < needed) {
    rmSync(work, { recursive: true, force: true })
    throw new Error(
      `not enough disk: ${(avail / 1024 ** 3).toFixed(1)} GiB free, the bench needs about ${(needed / 1024 ** 3).toFixed(1)} GiB; lower --size-mib`
    )
  }

  const run = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
  const mounts = benchMounts(run)
  const startedAt = Date.now() - 2000
  const others = await foreignBuilds()
  if (others.length > 0) {
    const why = opts.privateEngine
      ? 'they share the CPUs: noisier figures'
      : 'noisier figures, and their prunes empty our mounts (try --private-engine)'
    log(`warning: other builds/tests are running on this machine (${why}):\n  ${others.join('\n  ')}`)
  }
  let privateEngine: PrivateEngine | undefined
  if (opts.privateEngine) {
    privateEngine = await startPrivateEngine(run, UTILITY_IMAGE)
    // Every docker command from here on (ours, the action's, per-mount's) goes to it.
    process.env.DOCKER_HOST = privateEngine.host
    log(`private engine: dockerd pid ${privateEngine.pid} on ${privateEngine.host}`)
  }
  log(
    `run ${run}: ${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB, ${plan.files} files + ${plan.hardlinks} hardlinks + ${plan.symlinks} symlinks in 3 mounts; ${opts.repeat} round(s); work dir ${work}`
  )

  const engineVersions = (await sh("docker version --format 'dockerd {{.Server.Version}}'; docker buildx version", { allowFail: true })).stdout
    .trim()
    .split('\n')
  let service: CacheService
  let bundle: ReturnType<typeof bundleAction>
  try {
    service = await startCacheService({ dataDir: join(work, 'cache-service') })
    bundle = bundleAction()
  } catch (error) {
    await privateEngine?.stop()
    rmSync(work, { recursive: true, force: true })
    throw error
  }
  const perMount = new PerMount({
    scratchDir: join(work, 'scratch'),
    utilityImage: UTILITY_IMAGE,
    builder: 'default',
    namePrefix: `bmc-bench-dance-${run}`
  })
  const samples = new Samples()
  const fidelity: Record<string, string> = {}
  const details: Record<string, unknown> = {}
  const rss: Record<string, number[]> = {}
  const workspace = join(work, 'workspace')
  mkdirSync(workspace, { recursive: true })
  mkdirSync(join(work, 'rss'), { recursive: true })
  const runner: ActionRunner = {
    bundleDir: bundle.dir,
    workspace,
    env: { ...service.env(), RUNNER_TEMP: join(work, 'runner-temp'), GITHUB_WORKSPACE: workspace },
    inputs: { mounts: actionMountsInput(mounts), 'key-files': '', 'utility-image': UTILITY_IMAGE, client: 'buildx' },
    rssDir: join(work, 'rss')
  }
  const hostData = join(work, 'host', 'data')
  const tarCtx = join(work, 'tar-ctx')

  /** The tree as generated: set by generate(), compared against after every move. */
  let original = new Map<string, Signature>()
  let hostSignatures: Map<string, TreeSignature> | undefined

  // 1. The data, created inside the builder by a user build.
  const generate = async (): Promise<void> => {
    log('generating the cache mounts with a user build')
    const ctx = join(work, 'ctx-generate')
    await mkdir(ctx, { recursive: true })
    await writeFile(join(ctx, 'Dockerfile'), generatorDockerfile(UTILITY_IMAGE, mounts, plan, randomUUID()))
    const gen = await sh(`docker buildx build --progress=plain --network=none --output type=cacheonly ${q(ctx)}`)
    samples.add('info.generate', gen.seconds)
    original = parseSignatures(gen.stderr)
    if (original.size !== 3) throw new Error(`the generator build printed no signatures:\n${gen.stderr.slice(-3000)}`)
    details.originalSignatures = Object.fromEntries(original)
    // The host tree and the tar files are made from this content, when first needed.
    hostSignatures = undefined
    rmSync(join(work, 'host'), { recursive: true, force: true })
    rmSync(tarCtx, { recursive: true, force: true })
  }

  const signaturesOf = async (ids: string[]): Promise<Map<string, Signature>> => {
    const ctx = join(work, 'ctx-signature')
    await mkdir(ctx, { recursive: true })
    await writeFile(join(ctx, 'Dockerfile'), signatureDockerfile(UTILITY_IMAGE, mounts, ids, randomUUID()))
    return parseSignatures((await sh(`docker buildx build --progress=plain --network=none --output type=cacheonly ${q(ctx)}`)).stderr)
  }
  /** Compares moved trees with the generated ones; an empty mount means someone pruned the builder. */
  const compare = (label: string, got: Map<string, Signature | TreeSignature>, want: Map<string, Signature | TreeSignature>): void => {
    const problems: string[] = []
    for (const m of mounts) {
      const w = want.get(m.name)
      const h = got.get(m.name)
      if (!w || !h) throw new Error(`${label}: no signature for ${m.name}`)
      if (h.entries === 0) throw new ForeignPrune(`${label}: the ${m.name} mount is empty`)
      if (w.entries !== h.entries) problems.push(`${m.name}: ${h.entries} entries, want ${w.entries}`)
      else if (w.meta !== h.meta) problems.push(`${m.name}: owner/mode/size/links differ`)
      if (w.fileMtimes !== h.fileMtimes) problems.push(`${m.name}: file mtimes differ`)
      if (w.dirMtimes !== h.dirMtimes) problems.push(`${m.name}: dir mtimes differ`)
      if (h.buildstamp && !w.buildstamp) problems.push(`${m.name}: extra /buildstamp`)
    }
    fidelity[label] = problems.length === 0 ? 'identical' : problems.join('; ')
  }

  /** One round of every measurement; its samples count only if it completes. */
  const measureRound = async (round: number, attempt: number, s: Samples, r: Record<string, number[]>): Promise<void> => {
    const prefix = `bench-${run}-r${round}a${attempt}`
    const tag = `r${round}a${attempt}`

    // 2a. Our post on a miss: extract + full upload.
    const mainMiss = await runActionStep(runner, 'main', prefix)
    if (mainMiss.result.outputs['cache-hit'] !== 'false') throw new Error('main on an empty cache service reported a hit')
    s.add('ours.mainMiss', mainMiss.seconds)
    log('our post step on a miss (extract + save)')
    const postMiss = await runActionStep(runner, 'post', prefix, mainMiss.result.state)
    expectAll(
      postMiss.saved.map(x => x.id),
      mounts,
      'saved',
      postMiss
    )
    addStep(s, r, 'ours.postMiss', postMiss)
    // Uploads run concurrently: their wall time is what the step spends besides extracting.
    s.add('ours.postMiss.saveWall', postMiss.seconds - (postMiss.extractSeconds ?? Number.NaN))
    s.add('ours.postMiss.saveMax', Math.max(...postMiss.saved.map(x => x.seconds)))

    // 3c. Extract floors, from the same mounts.
    for (const v of EXTRACT_VARIANTS) {
      log(`extract floor: ${v}`)
      const f = await extractFloor(v, UTILITY_IMAGE, mounts, work)
      if ((f.bytes ?? 0) < plan.totalBytes) throw new ForeignPrune(`extract floor ${v} exported ${f.bytes} bytes, the mounts hold ${plan.totalBytes}`)
      s.add(`floor.${f.name}`, f.seconds)
      details[`floor.${f.name}.steps`] = f.steps
    }

    // The host tree (once per generated content): the export, unpacked as root to keep owners.
    if (!hostSignatures) {
      log('unpacking the tree on the host (untimed)')
      await mkdir(hostData, { recursive: true })
      await extractFloor('scratch-copy', UTILITY_IMAGE, mounts, work, `tar -x --numeric-owner -C ${q(hostData)}`)
      await mkdir(tarCtx, { recursive: true })
      for (const m of mounts) await sh(`tar -C ${q(join(hostData, m.name))} --numeric-owner -cf ${q(join(tarCtx, `${m.name}.tar`))} .`)
      const sigs = new Map<string, TreeSignature>()
      for (const m of mounts) sigs.set(m.name, await hostTreeSignature(join(hostData, m.name)))
      if (mounts.some(m => (sigs.get(m.name)?.entries ?? 0) !== original.get(m.name)?.entries))
        throw new ForeignPrune('the host tree does not match the mounts')
      hostSignatures = sigs
      details.hostSignatures = Object.fromEntries(sigs)
    }

    // 4. Per-mount extract.
    log('per-mount extract (buildkit-cache-dance method)')
    const danceOut = join(work, 'dance-out', tag)
    await mkdir(danceOut, { recursive: true })
    const extractMap: CacheMap = Object.fromEntries(mounts.map(m => [join(danceOut, m.name), Object.fromEntries(mountOptions(m))]))
    const danceExtract = await perMount.extractCaches(extractMap)
    const danceTrees = new Map<string, TreeSignature>()
    for (const m of mounts) danceTrees.set(m.name, await hostTreeSignature(join(danceOut, m.name)))
    compare('per-mount extract (host tree vs reference host tree)', danceTrees, hostSignatures)
    addDance(s, 'perMount.extract', danceExtract)
    details.perMountExtract = danceExtract.map(t => ({ source: t.source, seconds: t.seconds, steps: t.steps }))
    rmSync(danceOut, { recursive: true, force: true })

    // 3a. Host floors.
    log('host floors')
    for (const f of await hostFloors(hostData)) s.add(`floor.${f.name}`, f.seconds)

    // 2b. Builder prune: our three mounts go, as on a fresh runner.
    log('pruning our cache mounts')
    const pruneStarted = performance.now()
    const records = await listRecords()
    const ours = records.filter(x => x.type === 'exec.cachemount' && mounts.some(m => isMountOf(x.description, m.id)))
    await pruneRecords(ours.map(x => x.id))
    s.add('ours.prune', (performance.now() - pruneStarted) / 1000)
    const left = await signaturesOf(mounts.map(m => m.id))
    if (mounts.some(m => (left.get(m.name)?.entries ?? 0) > 0))
      throw new Error(`the prune left data in our mounts: ${JSON.stringify(Object.fromEntries(left))}`)

    // 2c. Our main on a hit: restore + inject; then 2d. post again, nothing changed.
    log('our main step on a hit (restore + inject)')
    const mainHit = await runActionStep(runner, 'main', prefix)
    if (mainHit.result.outputs['cache-hit'] !== 'true') throw new Error(`main did not hit:\n${mainHit.result.stdout.slice(-3000)}`)
    const restoredBytes = JSON.parse(mainHit.result.outputs.mounts ?? '[]') as Array<{ id: string; 'restored-bytes': number }>
    for (const m of mounts) {
      const got = restoredBytes.find(x => x.id === m.id)?.['restored-bytes']
      if (got !== plan.bytes[m.name]) throw new Error(`${m.id}: restored ${got} bytes, generated ${plan.bytes[m.name]}`)
    }
    log('our post step, content unchanged (extract, no upload)')
    const postSame = await runActionStep(runner, 'post', prefix, mainHit.result.state)
    expectAll(postSame.unchanged, mounts, 'unchanged', postSame)
    compare('ours: restore + inject (builder tree vs generated)', await signaturesOf(mounts.map(m => m.id)), original)
    addStep(s, r, 'ours.mainHit', mainHit)
    s.add('ours.mainHit.restoreWall', mainHit.seconds - (mainHit.injectSeconds ?? Number.NaN))
    s.add('ours.mainHit.restoreMax', Math.max(...mainHit.restored.map(x => x.seconds)))
    addStep(s, r, 'ours.postUnchanged', postSame)

    // 3b. Inject floors, into fresh ids.
    for (const v of INJECT_VARIANTS) {
      log(`inject floor: ${v}`)
      const suffix = `floor-${v}-${tag}`
      const f = await injectFloor(v, UTILITY_IMAGE, mounts, v === 'tar-x' ? tarCtx : join(work, 'host'), suffix)
      compare(`floor inject ${v} (builder tree vs generated)`, await signaturesOf(mounts.map(m => `${m.id}-${suffix}`)), original)
      s.add(`floor.${f.name}`, f.seconds)
      details[`floor.${f.name}.steps`] = f.steps
    }

    // 4. Per-mount inject, into fresh ids with the same options.
    log('per-mount inject (buildkit-cache-dance method)')
    const danceSrc = join(work, 'dance-src', tag)
    // As the workflow's actions/cache step would have left them (cp -a keeps hardlinks and symlinks).
    await mkdir(danceSrc, { recursive: true })
    for (const m of mounts) await sh(`cp -a ${q(join(hostData, m.name))} ${q(join(danceSrc, m.name))}`)
    const injectMap: CacheMap = Object.fromEntries(
      mounts.map(m => [join(danceSrc, m.name), Object.fromEntries(mountOptions(m, m.target, `${m.id}-dance-${tag}`))])
    )
    const danceInject = await perMount.injectCaches(injectMap)
    compare('per-mount inject (builder tree vs generated)', await signaturesOf(mounts.map(m => `${m.id}-dance-${tag}`)), original)
    addDance(s, 'perMount.inject', danceInject)
    details.perMountInject = danceInject.map(t => ({ source: t.source, seconds: t.seconds, steps: t.steps }))
    rmSync(danceSrc, { recursive: true, force: true })

    details[`${tag}.buildSteps`] = { postMiss: postMiss.buildSteps, mainHit: mainHit.buildSteps, postUnchanged: postSame.buildSteps }
    details[`${tag}.restored`] = mainHit.restored
    details[`${tag}.saved`] = postMiss.saved
  }

  let ok = false
  try {
    await generate()
    for (let round = 0; round < opts.repeat; round++) {
      for (let attempt = 1; ; attempt++) {
        log(`round ${round + 1}/${opts.repeat}${attempt > 1 ? `, attempt ${attempt}` : ''}`)
        const s = new Samples()
        const r: Record<string, number[]> = {}
        try {
          await measureRound(round, attempt, s, r)
          samples.merge(s)
          for (const [k, v] of Object.entries(r)) (rss[k] ??= []).push(...v)
          break
        } catch (error) {
          if (!(error instanceof ForeignPrune) || attempt >= 3) throw error
          log(`${error.message}: another job pruned the builder; regenerating and repeating the round`)
          await generate()
        } finally {
          // Keep the disk in check between rounds: everything but our three mounts.
          if (round + 1 < opts.repeat)
            await pruneOwn(
              run,
              startedAt,
              mounts.map(m => m.id)
            )
        }
      }
    }
    ok = true
  } finally {
    log('cleaning up')
    await perMount.cleanup().catch(() => undefined)
    await service.close().catch(() => undefined)
    bundle.cleanup()
    rmSync(work, { recursive: true, force: true })
    if (privateEngine) {
      await privateEngine.stop()
      delete process.env.DOCKER_HOST
    } else if (opts.pruneAll) await sh('docker buildx prune --all --force', { allowFail: true })
    else await pruneOwn(run, startedAt, []).catch((e: unknown) => log(`prune failed: ${String(e)}`))
  }
  if (!ok) return

  const report = buildReport(samples, plan, opts)
  console.log(report.text)
  console.log('\nFidelity (metadata of the moved tree vs the generated one):')
  for (const [k, v] of Object.entries(fidelity)) console.log(`  ${k}: ${v}`)
  const rssLine = Object.entries(rss)
    .map(([k, v]) => `${k} ${(Math.max(...v) / 1024).toFixed(0)} MiB`)
    .join(', ')
  console.log(`\nPeak RSS of the action's node process: ${rssLine} (${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB moved)`)
  if (others.length > 0) console.log('\nNote: other builds were running on the engine when the bench started; figures are noisier than usual.')
  if (opts.json) {
    writeFileSync(
      opts.json,
      `${JSON.stringify(
        {
          run,
          options: opts,
          dataset: { bytes: plan.totalBytes, bytesPerMount: plan.bytes, files: plan.files, hardlinks: plan.hardlinks, symlinks: plan.symlinks },
          engine: { private: opts.privateEngine, versions: engineVersions },
          samples: Object.fromEntries(samples.values),
          table: report.rows,
          roundTrip: report.roundTrip,
          fidelity,
          maxRssKiB: rss,
          foreignBuildsAtStart: others,
          details
        },
        null,
        2
      )}\n`
    )
    console.log(`\nJSON written to ${opts.json}`)
  }
}

/** Our mounts were emptied by someone else (other jobs on this engine run `buildx prune --all`). */
class ForeignPrune extends Error {}

/** A cache-mount record's description ends with `with id "/<id>"` (or without the slash). */
function isMountOf(description: string, id: string): boolean {
  return description.endsWith(`with id "/${id}"`) || description.endsWith(`with id "${id}"`)
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

function expectAll(ids: string[], mounts: BenchMount[], what: string, step: ActionStep): void {
  const missing = mounts.filter(m => !ids.includes(m.id))
  if (missing.length > 0 && /the mount is empty/.test(step.result.stdout)) throw new ForeignPrune(`${step.entry} found mounts empty`)
  if (missing.length > 0) {
    throw new Error(
      `${step.entry}: expected every mount ${what}, not ${missing.map(m => m.id).join(', ')} (was the builder pruned by someone else?):\n${step.result.stdout.slice(-3000)}`
    )
  }
}

function addStep(samples: Samples, rss: Record<string, number[]>, name: string, step: ActionStep): void {
  samples.add(name, step.seconds)
  samples.add(`${name}.extract`, step.extractSeconds)
  if (step.extractMode && !samples.modes.includes(step.extractMode)) samples.modes.push(step.extractMode)
  samples.add(`${name}.inject`, step.injectSeconds)
  for (const [kind, seconds] of Object.entries(step.buildSteps)) if (seconds > 0) samples.add(`${name}.build.${kind}`, seconds)
  if (step.maxRssKiB !== undefined) (rss[name] ??= []).push(step.maxRssKiB)
}

function addDance(samples: Samples, name: string, timings: DanceMountTiming[]): void {
  samples.add(name, sum(timings.map(t => t.seconds)))
  const steps = new Set(timings.flatMap(t => Object.keys(t.steps)))
  for (const s of steps) samples.add(`${name}.${s}`, sum(timings.map(t => t.steps[s] ?? 0)))
}

/**
 * Prunes what this run left in the builder: records naming the run id (its
 * cache mounts and RUN layers; `keep` ids excepted), and the unnamed
 * throw-away records created since the start: build contexts and the layers
 * of the action's generated builds. Never another job's cache mount.
 */
async function pruneOwn(run: string, since: number, keep: string[]): Promise<void> {
  const records = await listRecords()
  const doomed = records.filter((r: CacheRecord) => {
    if (r.inUse || !(r.createdAt >= since)) return false
    if (keep.some(id => isMountOf(r.description, id))) return false
    if (r.description.includes(run)) return true
    if (r.type === 'exec.cachemount') return false
    return /^(local source for context|http url http:\/\/buildkit-session|copy \/context \/)/.test(r.description) || r.description.includes('/bmc/')
  })
  await pruneRecords(doomed.map(r => r.id))
}

// ---------------------------------------------------------------------------
// Report

interface Row {
  phase: string
  seconds: number
  vsFloor?: number
  vsPerMount?: number
  vsHostTar?: number
}

function buildReport(samples: Samples, plan: DatasetPlan, opts: Options): { text: string; rows: Row[]; roundTrip: Record<string, number> } {
  const floorInject = Math.min(...INJECT_VARIANTS.map(v => samples.need(`floor.inject-${v}`)))
  const floorExtract = Math.min(...EXTRACT_VARIANTS.map(v => samples.need(`floor.extract-${v}`)))
  const bestInject = INJECT_VARIANTS.find(v => samples.need(`floor.inject-${v}`) === floorInject)
  const bestExtract = EXTRACT_VARIANTS.find(v => samples.need(`floor.extract-${v}`) === floorExtract)
  const pmInject = samples.need('perMount.inject')
  const pmExtract = samples.need('perMount.extract')
  const hostTar = samples.need('floor.host-tar')
  const rows: Row[] = []
  const row = (phase: string, name: string, floor?: number, perMount?: number): void => {
    const seconds = samples.get(name)
    if (seconds === undefined) return
    const r: Row = { phase, seconds, vsHostTar: seconds / hostTar }
    if (floor !== undefined) r.vsFloor = seconds / floor
    if (perMount !== undefined) r.vsPerMount = seconds / perMount
    rows.push(r)
  }
  const E: [number, number] = [floorExtract, pmExtract]
  const I: [number, number] = [floorInject, pmInject]
  row('ours: post on a miss (extract + save), whole step', 'ours.postMiss', ...E)
  row(`    extract (log "Extracted ... in", ${samples.modes.join('/') || '?'})`, 'ours.postMiss.extract', ...E)
  row('      BuildKit RUN step', 'ours.postMiss.build.run')
  row('      BuildKit COPY --from', 'ours.postMiss.build.copy')
  row('      BuildKit export (tar to stdout)', 'ours.postMiss.build.export')
  row('    save, 3 concurrent uploads (step − extract)', 'ours.postMiss.saveWall', ...E)
  row('      slowest upload (log "saved ... s")', 'ours.postMiss.saveMax')
  row('builder prune (our 3 mounts)', 'ours.prune')
  row('ours: main on a miss (3 lookups, no inject), whole step', 'ours.mainMiss')
  row('ours: main on a hit (restore + inject), whole step', 'ours.mainHit', ...I)
  row('    restore, 3 concurrent downloads + scans (step − inject)', 'ours.mainHit.restoreWall', ...I)
  row('      slowest restore (log "restored ... s")', 'ours.mainHit.restoreMax')
  row('    inject (log "Injected ... in")', 'ours.mainHit.inject', ...I)
  row('      BuildKit context load', 'ours.mainHit.build.context')
  row('      BuildKit RUN step', 'ours.mainHit.build.run')
  row('      BuildKit export (marker to stdout)', 'ours.mainHit.build.export')
  row('ours: post, unchanged (extract, no upload), whole step', 'ours.postUnchanged', ...E)
  row(`    extract (log "Extracted ... in", ${samples.modes.join('/') || '?'})`, 'ours.postUnchanged.extract', ...E)
  row('      BuildKit RUN step', 'ours.postUnchanged.build.run')
  row('floor: host tar -c | cat', 'floor.host-tar')
  row('floor: host tar -c | zstd -T0 --long=30', 'floor.host-tar-zstd')
  for (const v of INJECT_VARIANTS) row(`floor inject: ${v}${v === bestInject ? ' (best = floor)' : ''}`, `floor.inject-${v}`, floorInject, pmInject)
  for (const v of EXTRACT_VARIANTS)
    row(`floor extract: ${v}${v === bestExtract ? ' (best = floor)' : ''}`, `floor.extract-${v}`, floorExtract, pmExtract)
  row('per-mount inject (3 builds, dir context)', 'perMount.inject', floorInject, pmInject)
  row('    its builds', 'perMount.inject.build')
  row('    its rm -rf of the sources', 'perMount.inject.clean')
  row('per-mount extract (3 builds + docker cp + untar)', 'perMount.extract', floorExtract, pmExtract)
  row('    its builds (--load)', 'perMount.extract.build')
  row('    docker create', 'perMount.extract.create')
  row('    docker cp | tar -x', 'perMount.extract.copy')

  const oursEngine = samples.need('ours.mainHit.inject') + samples.need('ours.postMiss.extract')
  const oursSteps = samples.need('ours.mainHit') + samples.need('ours.postMiss')
  const oursStepsSame = samples.need('ours.mainHit') + samples.need('ours.postUnchanged')
  const perMountTrip = pmInject + pmExtract
  const floorTrip = floorInject + floorExtract
  const roundTrip = {
    oursEngineSeconds: oursEngine,
    oursStepsSeconds: oursSteps,
    oursStepsUnchangedSeconds: oursStepsSame,
    perMountSeconds: perMountTrip,
    floorSeconds: floorTrip,
    hostTarSeconds: hostTar,
    oursEngineVsFloor: oursEngine / floorTrip,
    oursEngineVsPerMount: oursEngine / perMountTrip,
    oursStepsVsFloor: oursSteps / floorTrip,
    oursStepsVsPerMount: oursSteps / perMountTrip,
    oursStepsUnchangedVsPerMount: oursStepsSame / perMountTrip,
    perMountVsFloor: perMountTrip / floorTrip,
    floorVsHostTar: floorTrip / hostTar
  }

  const fmt = (n: number | undefined, digits = 2): string => (n === undefined ? '' : n.toFixed(digits))
  const width = Math.max(...rows.map(r => r.phase.length), 10)
  const lines = [
    '',
    `Bench: ${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB, ${plan.files} files (+${plan.hardlinks} hardlinks, ${plan.symlinks} symlinks) in 3 cache mounts; ${opts.repeat} round(s), medians.`,
    `Ratios are against the same run's floor (inject phases: best single inject build "${bestInject}"; extract/save phases: best single export build "${bestExtract}"),`,
    'against the per-mount method (inject vs its inject, extract vs its extract) and against host tar -c | cat of the tree.',
    '',
    `${'phase'.padEnd(width)}  ${'s'.padStart(7)}  ${'× floor'.padStart(8)}  ${'× per-mount'.padStart(11)}  ${'× host tar'.padStart(10)}`,
    `${'-'.repeat(width)}  ${'-'.repeat(7)}  ${'-'.repeat(8)}  ${'-'.repeat(11)}  ${'-'.repeat(10)}`,
    ...rows.map(
      r =>
        `${r.phase.padEnd(width)}  ${fmt(r.seconds).padStart(7)}  ${fmt(r.vsFloor).padStart(8)}  ${fmt(r.vsPerMount).padStart(11)}  ${fmt(r.vsHostTar, 1).padStart(10)}`
    ),
    '',
    'Round trip (inject + extract):',
    `  ours, engine part (Injected + Extracted)      ${fmt(roundTrip.oursEngineVsFloor)} × floor, ${fmt(roundTrip.oursEngineVsPerMount)} × per-mount`,
    `  ours, whole steps (main hit + post miss)      ${fmt(roundTrip.oursStepsVsFloor)} × floor, ${fmt(roundTrip.oursStepsVsPerMount)} × per-mount (per-mount without its actions/cache step)`,
    `  ours, whole steps (main hit + post unchanged) ${fmt(oursStepsSame / floorTrip)} × floor, ${fmt(roundTrip.oursStepsUnchangedVsPerMount)} × per-mount`,
    `  per-mount (inject + extract)                  ${fmt(roundTrip.perMountVsFloor)} × floor`,
    `  floor (best inject + best extract)            ${fmt(roundTrip.floorVsHostTar, 1)} × host tar -c | cat`
  ]
  return { text: lines.join('\n'), rows, roundTrip }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
