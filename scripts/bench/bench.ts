// `npm run bench` (issue 9): what the action's phases cost on a real engine,
// next to the floor (the least work that moves the same tree) and to the
// per-mount method of buildkit-cache-dance, all measured in the same run.
//
//   npx tsx scripts/bench/bench.ts [--size-mib 1024] [--files 20000] [--quick]
//       [--sizes 256,512,1024] [--repeat 1] [--json FILE] [--private-engine]
//       [--prune-all] [--compression] [--builder NAME] [--cache-clients]
//       [--changed PERCENT [--delete-superseded]] [--restore-stream]
//
// --quick        64 MiB / 2,000 files, a sanity run
// --sizes LIST   a sweep: the whole measurement at each size (MiB), one after
//                another, then a growth table (seconds per GiB by size). Files
//                scale with the size at 20000 per 1024 MiB, or with --files
//                given, that many at the largest size and proportionally fewer
//                below. Replaces --size-mib and --quick.
// --repeat N     N rounds; every figure is the median of its N samples
// --json FILE    also write every sample and the table as JSON (with --sizes:
//                one element of `sizes` per size, and `growth`)
// --private-engine  run on a private dockerd (same binary, own socket and data
//                root, deleted at the end) instead of the shared engine: use it
//                when other jobs build or prune on the shared one (see private-engine.ts)
// --prune-all    finish with `docker buildx prune --all --force` (default: prune
//                only the records this run created; other jobs may share the engine)
// --compression  also measure tar | zstd at a few levels over the host tree of
//                each size and over two synthetic samples (see compression.ts)
// --builder NAME every phase on buildx builder NAME (e.g. a docker-container builder:
//                scripts/builders.sh env NAME gives the engine's environment, and
//                BMC_TEST_UTILITY_IMAGE the utility image as that builder pulls it): the
//                action (input builder), the per-mount method and the floors, whose
//                stream variants use the route the action finds (src/builder/reach.ts)
// --cache-clients only the GitHub cache's two clients (the cache library and the
//                stream client) saving and restoring one archive of --size-mib,
//                incompressible and compressible, no engine (see cache-clients.ts)
// --changed PERCENT  only the delta saves scenario (see delta.ts): the tree of
//                --size-mib / --files saved once, then 10 runs on a fresh builder
//                that each change PERCENT of its files (half added, half
//                rewritten) and remove half as many, restoring and saving
//                through the action; ratios of uploads, post and main times and
//                the entries kept
// --delete-superseded  with --changed: the action's input delete-superseded: true
//                (without it the kept entries are what nothing deleting leaves)
// --restore-stream  only the streamed restore scenario (see restore-stream.ts):
//                the tree of --size-mib / --files saved once, then --repeat
//                rounds (default 2) of main into a builder without the mounts,
//                downloading to files first (BUILDKIT_MOUNT_CACHE_STREAM_RESTORE=false),
//                then streaming into the inject build; restore to ready against
//                the file mode's inject alone, bytes written to the runner's
//                disk, peak RSS
//
// Other jobs that `buildx prune --all` the shared engine empty the bench's
// mounts; the bench notices (every move is checked) and repeats the round on
// fresh data, up to three times.
//
// The machine is noisy: read the ratios, not the seconds.
import { randomBytes, randomUUID } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'

import { runCommand } from '../../src/builder/command.js'
import { findReach } from '../../src/builder/reach.js'
import type { StreamReach } from '../../src/builder/route.js'
import { bundleAction, REPO_ROOT } from '../../test-support/action-runner.js'
import { UTILITY_IMAGE } from '../../test-support/user-build.js'
import { runActionStep, startBenchRunner, type ActionRunner, type ActionStep } from './action.js'
import { runCacheClientBench } from './cache-clients.js'
import { compressionTable, measureCompression, measureSyntheticSamples, type CompressionResult } from './compression.js'
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
import {
  foreignBuilds,
  hostTreeSignature,
  isMountOf,
  listRecords,
  pruneMounts,
  pruneRecords,
  q,
  sh,
  type CacheRecord,
  type TreeSignature
} from './lib.js'
import { runDeltaBench, type DeltaResult } from './delta.js'
import { ROUNDS, runRestoreStreamBench, type RestoreStreamResult } from './restore-stream.js'
import { PerMount, type CacheMap, type DanceMountTiming } from './per-mount.js'
import { startPrivateEngine, type PrivateEngine } from './private-engine.js'
import { buildReport, growthRows, growthTable, Samples, type SizeOutcome } from './report.js'

// ---------------------------------------------------------------------------
// Options

const DEFAULT_SIZE_MIB = 1024
const DEFAULT_FILES = 20000

interface Options {
  sizeMiB: number
  files: number
  /** --sizes: the MiB of each dataset, ascending, measured one after another. */
  sizes?: number[]
  /** --files was given (with --sizes it is the count at the largest size). */
  filesGiven: boolean
  repeat: number
  json?: string
  pruneAll: boolean
  privateEngine: boolean
  compression: boolean
  /** --cache-clients: only the GitHub cache clients' bench (no engine). */
  cacheClients?: boolean
  /** --builder: the buildx builder every phase runs on (default: the current one). */
  builder?: string
  /** --changed: only the delta scenario, changing this percentage of the files per run. */
  changed?: number
  /** --delete-superseded: the action's input of that name, for the delta scenario. */
  deleteSuperseded: boolean
  /** --restore-stream: only the streamed restore scenario. */
  restoreStream: boolean
  /** --repeat was given (the restore-stream scenario has its own default). */
  repeatGiven: boolean
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    sizeMiB: DEFAULT_SIZE_MIB,
    files: DEFAULT_FILES,
    filesGiven: false,
    repeat: 1,
    pruneAll: false,
    privateEngine: false,
    compression: false,
    deleteSuperseded: false,
    restoreStream: false,
    repeatGiven: false
  }
  let sizeGiven = false
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
    if (arg === '--quick') {
      Object.assign(opts, { sizeMiB: 64, files: 2000 })
      sizeGiven = true
    } else if (arg === '--size-mib') {
      opts.sizeMiB = positive(value())
      sizeGiven = true
    } else if (arg === '--sizes')
      opts.sizes = [
        ...new Set(
          value()
            .split(',')
            .map(v => positive(v.trim()))
        )
      ].sort((a, b) => a - b)
    else if (arg === '--files') {
      opts.files = positive(value())
      opts.filesGiven = true
    } else if (arg === '--repeat') {
      opts.repeat = positive(value())
      opts.repeatGiven = true
    } else if (arg === '--json') opts.json = value()
    else if (arg === '--prune-all') opts.pruneAll = true
    else if (arg === '--private-engine') opts.privateEngine = true
    else if (arg === '--compression') opts.compression = true
    else if (arg === '--builder') opts.builder = value()
    else if (arg === '--cache-clients') opts.cacheClients = true
    else if (arg === '--changed') {
      const v = value()
      const n = Number(v)
      if (!Number.isFinite(n) || n <= 0 || n > 50) throw new Error(`--changed needs a percentage above 0 and at most 50, got ${v}`)
      opts.changed = n
    } else if (arg === '--delete-superseded') opts.deleteSuperseded = true
    else if (arg === '--restore-stream') opts.restoreStream = true
    else if (arg === '--help' || arg === '-h') {
      console.log(
        'usage: bench.ts [--size-mib N | --sizes N,N,...] [--files N] [--quick] [--repeat N] [--json FILE] [--private-engine] [--prune-all] [--compression] [--builder NAME] [--cache-clients] [--changed PERCENT [--delete-superseded]] [--restore-stream]'
      )
      process.exit(0)
    } else throw new Error(`unknown argument ${arg}`)
  }
  if (opts.sizes && sizeGiven) throw new Error('--sizes replaces --size-mib and --quick: give one or the other')
  if (opts.builder && opts.privateEngine) throw new Error('--builder names a builder of the current engine; --private-engine starts another')
  if (opts.changed !== undefined && (opts.sizes || opts.repeat > 1 || opts.compression || opts.cacheClients))
    throw new Error('--changed is a scenario of its own: one size (--size-mib), one round, without --compression or --cache-clients')
  if (opts.deleteSuperseded && opts.changed === undefined) throw new Error('--delete-superseded belongs to the --changed scenario')
  if (opts.restoreStream && (opts.sizes || opts.compression || opts.cacheClients || opts.changed !== undefined))
    throw new Error('--restore-stream is a scenario of its own: one size (--size-mib), without --compression, --cache-clients or --changed')
  return opts
}

interface SizeSpec {
  sizeMiB: number
  files: number
}

/**
 * The dataset sizes to measure. With --sizes the file count keeps the files
 * per MiB of the default (or of --files at the largest size); at least 100.
 */
function sizeSpecs(opts: Options): SizeSpec[] {
  if (!opts.sizes) return [{ sizeMiB: opts.sizeMiB, files: opts.files }]
  const largest = Math.max(...opts.sizes)
  const filesPerMiB = opts.filesGiven ? opts.files / largest : DEFAULT_FILES / DEFAULT_SIZE_MIB
  return opts.sizes.map(sizeMiB => ({ sizeMiB, files: Math.max(100, Math.round(sizeMiB * filesPerMiB)) }))
}

const log = (text: string): void => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}`)

// ---------------------------------------------------------------------------

/** What every size shares. */
interface Bench {
  opts: Options
  /** Run id: in every record description, key and name the run creates. */
  run: string
  /** Records created since then (and naming the run) are the run's own. */
  startedAt: number
  work: string
  bundleDir: string
  perMount: PerMount
  /** Where a RUN of the builder reaches the bench's listeners (the stream floors). */
  reach: StreamReach
}

interface SizeResult extends SizeOutcome {
  fidelity: Record<string, string>
  details: Record<string, unknown>
  rss: Record<string, number[]>
  compression?: CompressionResult
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  if (opts.cacheClients) return runCacheClientBench(opts.sizeMiB)
  const specs = sizeSpecs(opts)
  const plans = specs.map(s => planDataset(s.sizeMiB * 1024 * 1024, s.files))

  const engine = spawnSync('bash', [join(REPO_ROOT, 'scripts/engine.sh'), 'start'], { stdio: ['ignore', 'ignore', 'inherit'] })
  if (engine.status !== 0) throw new Error('scripts/engine.sh start failed')

  const work = mkdtempSync(join(tmpdir(), 'bmc-bench-'))
  await checkDisk(work, Math.max(...plans.map(p => p.totalBytes)), opts)

  const run = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
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

  if (opts.builder) {
    // The current builder of every docker buildx command from here on, the action's included.
    process.env.BUILDX_BUILDER = opts.builder
  }
  const reach = await findReach(runCommand, { client: 'buildx', docker: 'docker', ...(opts.builder ? { builder: opts.builder } : {}) })
  if (reach === undefined) throw new Error('no stream reaches this machine from the builder: the stream floors cannot run')
  log(`builder ${opts.builder ?? '(current)'}: streams reach the bench at ${reach.host} (${reach.route}, build network ${reach.network})`)
  const engineVersions = (await sh("docker version --format 'dockerd {{.Server.Version}}'; docker buildx version", { allowFail: true })).stdout
    .trim()
    .split('\n')
  let bundle: ReturnType<typeof bundleAction>
  try {
    bundle = bundleAction()
  } catch (error) {
    await privateEngine?.stop()
    rmSync(work, { recursive: true, force: true })
    throw error
  }
  const perMount = new PerMount({
    scratchDir: join(work, 'scratch'),
    utilityImage: UTILITY_IMAGE,
    builder: opts.builder ?? 'default',
    namePrefix: `bmc-bench-dance-${run}`
  })
  const bench: Bench = { opts, run, startedAt, work, bundleDir: bundle.dir, perMount, reach }
  const results: SizeResult[] = []
  const synthetic: CompressionResult[] = []
  let delta: DeltaResult | undefined
  let restoreStream: RestoreStreamResult | undefined
  let failure: unknown
  try {
    if (opts.changed !== undefined) {
      const deltaOptions = { percent: opts.changed, sizeMiB: opts.sizeMiB, plan: plans[0] as DatasetPlan, deleteSuperseded: opts.deleteSuperseded }
      delta = await runDeltaBench(
        { run, work, bundleDir: bundle.dir, perMount, log },
        { ...deltaOptions, ...(opts.builder ? { builder: opts.builder } : {}) }
      )
    }
    if (opts.restoreStream) {
      const streamOptions = { sizeMiB: opts.sizeMiB, plan: plans[0] as DatasetPlan, rounds: opts.repeatGiven ? opts.repeat : ROUNDS }
      restoreStream = await runRestoreStreamBench(
        { run, work, bundleDir: bundle.dir, log },
        { ...streamOptions, ...(opts.builder ? { builder: opts.builder } : {}) }
      )
    }
    const scenario = delta !== undefined || opts.restoreStream
    for (const [i, spec] of (scenario ? [] : specs).entries()) {
      if (i > 0) {
        // The previous size's mounts, layers and contexts go, as after a run.
        log('pruning the previous size from the builder')
        await pruneOwn(run, startedAt, [])
      }
      const label = specs.length > 1 ? `, size ${i + 1}/${specs.length}` : ''
      results.push(await measureSize(bench, spec, plans[i] as DatasetPlan, label))
    }
    if (opts.compression) {
      log('compression of the synthetic samples')
      synthetic.push(...(await measureSyntheticSamples(work, opts.repeat)))
    }
  } catch (error) {
    failure = error
  } finally {
    log('cleaning up')
    await perMount.cleanup().catch(() => undefined)
    bundle.cleanup()
    rmSync(work, { recursive: true, force: true })
    if (privateEngine) {
      await privateEngine.stop()
      delete process.env.DOCKER_HOST
    } else if (opts.pruneAll) await sh('docker buildx prune --all --force', { allowFail: true })
    else await pruneOwn(run, startedAt, []).catch((e: unknown) => log(`prune failed: ${String(e)}`))
  }
  if (delta !== undefined) {
    console.log(delta.text)
    if (others.length > 0) console.log('\nNote: other builds were running on the engine when the bench started; figures are noisier than usual.')
    if (opts.json) {
      writeFileSync(opts.json, `${JSON.stringify({ run, options: opts, engine: { versions: engineVersions }, delta: delta.figures }, null, 2)}\n`)
      console.log(`\nJSON written to ${opts.json}`)
    }
  }
  if (restoreStream !== undefined) {
    console.log(restoreStream.text)
    if (others.length > 0) console.log('\nNote: other builds were running on the engine when the bench started; figures are noisier than usual.')
    if (opts.json) {
      const json = { run, options: opts, engine: { versions: engineVersions }, restoreStream: restoreStream.figures }
      writeFileSync(opts.json, `${JSON.stringify(json, null, 2)}\n`)
      console.log(`\nJSON written to ${opts.json}`)
    }
  }
  // Sizes that completed are reported even when a later one failed.
  if (results.length > 0) {
    const compression = [...results.flatMap(r => (r.compression ? [r.compression] : [])), ...synthetic]
    printResults(results, compression, others)
    if (opts.json) writeJson(opts.json, { run, opts, engineVersions, others }, results, compression)
  }
  if (failure !== undefined) throw failure
}

async function checkDisk(work: string, largestBytes: number, opts: Options): Promise<void> {
  const avail = Number((await sh(`df -B1 --output=avail ${q(work)} | tail -1`)).stdout.trim())
  // Per round: host tree, tar context files, per-mount copies, cache entries,
  // and the builder's copies (mounts, floor injects, exported layers).
  const needed = 16 * largestBytes + 2 * 1024 ** 3
  if (avail < needed) {
    rmSync(work, { recursive: true, force: true })
    throw new Error(
      `not enough disk: ${(avail / 1024 ** 3).toFixed(1)} GiB free, the bench needs about ${(needed / 1024 ** 3).toFixed(1)} GiB; lower ${opts.sizes ? 'the largest of --sizes' : '--size-mib'}`
    )
  }
}

/**
 * Every measurement at one dataset size: generate the mounts, the rounds,
 * and (--compression) tar | zstd over its host tree. With several sizes its
 * mounts, cache keys and work dir are its own (their names carry the size);
 * the cache service is started for it and stopped after, its entries deleted.
 */
async function measureSize(bench: Bench, spec: SizeSpec, plan: DatasetPlan, label: string): Promise<SizeResult> {
  const { opts, startedAt, perMount } = bench
  const run = opts.sizes ? `${bench.run}s${spec.sizeMiB}` : bench.run
  const mounts = benchMounts(run)
  const work = join(bench.work, `size-${spec.sizeMiB}`)
  log(
    `run ${bench.run}${label}: ${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB, ${plan.files} files + ${plan.hardlinks} hardlinks + ${plan.symlinks} symlinks in 3 mounts; ${opts.repeat} round(s); work dir ${work}`
  )
  const samples = new Samples()
  const fidelity: Record<string, string> = {}
  const details: Record<string, unknown> = {}
  const rss: Record<string, number[]> = {}
  const { runner, service } = await startBenchRunner(work, bench.bundleDir, actionMountsInput(mounts), bench.opts.builder)
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
      const f = await extractFloor(v, UTILITY_IMAGE, mounts, work, undefined, bench.reach)
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
    s.add('ours.mainHit.restoreMax', Math.max(...mainHit.restored.map(x => x.seconds)))
    addStep(s, r, 'ours.postUnchanged', postSame)

    // 2e. The fallback path (no host networking, as on a docker-container builder without the
    // entitlement): extract through the exporter on a miss (own key prefix), prune, inject through the build context.
    log('our post step on a miss, fallback path (build exporter)')
    const fallback: ActionRunner = { ...runner, inputs: { ...runner.inputs, 'extract-via': 'export' } }
    const fbPrefix = `${prefix}-fb`
    const fbMiss = await runActionStep(fallback, 'main', fbPrefix)
    const fbPost = await runActionStep(fallback, 'post', fbPrefix, fbMiss.result.state)
    expectAll(
      fbPost.saved.map(x => x.id),
      mounts,
      'saved',
      fbPost
    )
    s.add('fallback.extract', fbPost.extractSeconds)
    await pruneMounts(mounts.map(m => m.id))
    log('our main step on a hit, fallback path (build context)')
    const fbHit = await runActionStep(fallback, 'main', fbPrefix)
    if (fbHit.result.outputs['cache-hit'] !== 'true' || fbHit.injectMode !== 'build context') {
      throw new Error(`the fallback main did not hit through the build context:\n${fbHit.result.stdout.slice(-3000)}`)
    }
    s.add('fallback.inject', fbHit.injectSeconds)
    compare('ours, fallback: restore + inject via build context (builder tree vs generated)', await signaturesOf(mounts.map(m => m.id)), original)

    // 3b. Inject floors, into fresh ids.
    for (const v of INJECT_VARIANTS) {
      log(`inject floor: ${v}`)
      const suffix = `floor-${v}-${tag}`
      const f = await injectFloor(v, UTILITY_IMAGE, mounts, v === 'tar-x' ? tarCtx : join(work, 'host'), suffix, bench.reach)
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

  let compression: CompressionResult | undefined
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
              bench.run,
              startedAt,
              mounts.map(m => m.id)
            )
        }
      }
    }
    if (opts.compression) {
      log('compression of the host tree')
      compression = await measureCompression(hostData, { label: `bench tree, ${spec.sizeMiB} MiB`, workDir: work, repeat: opts.repeat })
    }
  } finally {
    await service.close().catch(() => undefined)
    rmSync(work, { recursive: true, force: true })
  }
  const report = buildReport(samples, plan, opts.repeat)
  return { sizeMiB: spec.sizeMiB, plan, samples, report, fidelity, details, rss, ...(compression ? { compression } : {}) }
}

function printResults(results: SizeResult[], compression: CompressionResult[], others: string[]): void {
  for (const result of results) printSize(result)
  if (results.length > 1) console.log(growthTable(growthRows(results)))
  if (compression.length > 0) console.log(compressionTable(compression))
  if (others.length > 0) console.log('\nNote: other builds were running on the engine when the bench started; figures are noisier than usual.')
}

function printSize({ report, fidelity, rss, plan }: SizeResult): void {
  console.log(report.text)
  console.log('\nFidelity (metadata of the moved tree vs the generated one):')
  for (const [k, v] of Object.entries(fidelity)) console.log(`  ${k}: ${v}`)
  const rssLine = Object.entries(rss)
    .map(([k, v]) => `${k} ${(Math.max(...v) / 1024).toFixed(0)} MiB`)
    .join(', ')
  console.log(`\nPeak RSS of the action's node process: ${rssLine} (${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB moved)`)
}

/** One size's part of the JSON (the whole JSON without --sizes). */
function sizeJson(r: SizeResult): Record<string, unknown> {
  const { plan } = r
  return {
    sizeMiB: r.sizeMiB,
    dataset: { bytes: plan.totalBytes, bytesPerMount: plan.bytes, files: plan.files, hardlinks: plan.hardlinks, symlinks: plan.symlinks },
    samples: Object.fromEntries(r.samples.values),
    table: r.report.rows,
    roundTrip: r.report.roundTrip,
    fidelity: r.fidelity,
    maxRssKiB: r.rss,
    details: r.details
  }
}

function writeJson(
  file: string,
  meta: { run: string; opts: Options; engineVersions: string[]; others: string[] },
  results: SizeResult[],
  compression: CompressionResult[]
): void {
  const common = {
    run: meta.run,
    options: meta.opts,
    engine: { private: meta.opts.privateEngine, versions: meta.engineVersions, builder: meta.opts.builder ?? null }
  }
  const perSize = meta.opts.sizes ? { sizes: results.map(sizeJson), growth: growthRows(results) } : sizeJson(results[0] as SizeResult)
  const json = { ...common, ...perSize, foreignBuildsAtStart: meta.others, ...(compression.length > 0 ? { compression } : {}) }
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`)
  console.log(`\nJSON written to ${file}`)
}

/** Our mounts were emptied by someone else (other jobs on this engine run `buildx prune --all`). */
class ForeignPrune extends Error {}

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
  samples.addMode('extract', step.extractMode)
  if (step.extractSeconds !== undefined) samples.add(`${name}.extractNotRead`, step.extractNotRead)
  samples.add(`${name}.inject`, step.injectSeconds)
  samples.addMode('inject', step.injectMode)
  if (step.restoreToReady) addRestoreToReady(samples, name, step.restoreToReady)
  for (const [kind, seconds] of Object.entries(step.buildSteps)) if (seconds > 0) samples.add(`${name}.build.${kind}`, seconds)
  if (step.maxRssKiB !== undefined) (rss[name] ??= []).push(step.maxRssKiB)
}

/** "Restore to ready" against the same line's slowest restore + inject, as if they had run one after the other. */
function addRestoreToReady(samples: Samples, name: string, ready: NonNullable<ActionStep['restoreToReady']>): void {
  const sequential = ready.slowestRestore + ready.inject
  samples.add(`${name}.restoreToReady`, ready.seconds)
  samples.add(`${name}.restoreSequential`, sequential)
  if (sequential > 0) samples.add(`${name}.restoreOverlap`, ready.seconds / sequential)
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

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
