// The bench's samples and its tables: one per dataset size, and the growth
// table across sizes (`--sizes`).
import { type DatasetPlan } from './dataset.js'
import { EXTRACT_VARIANTS, INJECT_VARIANTS } from './floor.js'
import { median } from './lib.js'

// ---------------------------------------------------------------------------
// Samples: every measured figure by name, one sample per round

export class Samples {
  readonly values = new Map<string, number[]>()
  /** How our steps moved the data (the "(mode)" of the "Extracted" / "Injected" log lines). */
  readonly modes: { extract: string[]; inject: string[] } = { extract: [], inject: [] }
  add(name: string, seconds: number | undefined): void {
    if (seconds === undefined || Number.isNaN(seconds)) return
    const list = this.values.get(name) ?? []
    list.push(seconds)
    this.values.set(name, list)
  }
  addMode(kind: 'extract' | 'inject', mode: string | undefined): void {
    if (mode !== undefined && !this.modes[kind].includes(mode)) this.modes[kind].push(mode)
  }
  get(name: string): number | undefined {
    const list = this.values.get(name)
    return list && list.length > 0 ? median(list) : undefined
  }
  merge(other: Samples): void {
    for (const [name, list] of other.values) for (const v of list) this.add(name, v)
    for (const kind of ['extract', 'inject'] as const) for (const m of other.modes[kind]) this.addMode(kind, m)
  }
  need(name: string): number {
    const v = this.get(name)
    if (v === undefined) throw new Error(`no sample for ${name}`)
    return v
  }
}

// ---------------------------------------------------------------------------
// One size

export interface Row {
  phase: string
  seconds: number
  vsFloor?: number
  vsPerMount?: number
  vsHostTar?: number
}

export interface SizeReport {
  text: string
  rows: Row[]
  roundTrip: Record<string, number>
}

/** The floor of each direction: the best (least) of its variants. */
export function floors(samples: Samples): { inject: number; extract: number; bestInject?: string; bestExtract?: string } {
  const inject = Math.min(...INJECT_VARIANTS.map(v => samples.need(`floor.inject-${v}`)))
  const extract = Math.min(...EXTRACT_VARIANTS.map(v => samples.need(`floor.extract-${v}`)))
  return {
    inject,
    extract,
    bestInject: INJECT_VARIANTS.find(v => samples.need(`floor.inject-${v}`) === inject),
    bestExtract: EXTRACT_VARIANTS.find(v => samples.need(`floor.extract-${v}`) === extract)
  }
}

const fmt = (n: number | undefined, digits = 2): string => (n === undefined || !Number.isFinite(n) ? '' : n.toFixed(digits))

export function buildReport(samples: Samples, plan: DatasetPlan, repeat: number): SizeReport {
  const floor = floors(samples)
  const pmInject = samples.need('perMount.inject')
  const pmExtract = samples.need('perMount.extract')
  const hostTar = samples.need('floor.host-tar')
  const rows: Row[] = []
  const row = (phase: string, name: string, floorSeconds?: number, perMount?: number): void => {
    const seconds = samples.get(name)
    if (seconds === undefined) return
    const r: Row = { phase, seconds, vsHostTar: seconds / hostTar }
    if (floorSeconds !== undefined) r.vsFloor = seconds / floorSeconds
    if (perMount !== undefined) r.vsPerMount = seconds / perMount
    rows.push(r)
  }
  const E: [number, number] = [floor.extract, pmExtract]
  const I: [number, number] = [floor.inject, pmInject]
  const extractModes = samples.modes.extract.join('/') || '?'
  const notRead = samples.get('ours.postUnchanged.extractNotRead')
  row('ours: post on a miss (extract + save), whole step', 'ours.postMiss', ...E)
  row(`    extract (log "Extracted ... in", ${extractModes})`, 'ours.postMiss.extract', ...E)
  row('      BuildKit RUN step', 'ours.postMiss.build.run')
  row('      BuildKit COPY --from', 'ours.postMiss.build.copy')
  row('      BuildKit export (tar to stdout)', 'ours.postMiss.build.export')
  row('    save, 3 concurrent uploads (step − extract)', 'ours.postMiss.saveWall', ...E)
  row('      slowest upload (log "saved ... s")', 'ours.postMiss.saveMax')
  row('builder prune (our 3 mounts)', 'ours.prune')
  row('ours: main on a miss (3 lookups, no inject), whole step', 'ours.mainMiss')
  row('ours: main on a hit (restore + inject), whole step', 'ours.mainHit', ...I)
  row('ours: restore to ready (downloads overlapped with inject)', 'ours.mainHit.restoreToReady', ...I)
  row('    slowest restore + inject, one after the other (same log line)', 'ours.mainHit.restoreSequential')
  row('      slowest restore (log "restored ... s")', 'ours.mainHit.restoreMax')
  row(`    inject (log "Injected ... in", ${samples.modes.inject.join('/') || '?'})`, 'ours.mainHit.inject', ...I)
  row('      BuildKit context load', 'ours.mainHit.build.context')
  row('      BuildKit RUN step', 'ours.mainHit.build.run')
  row('      BuildKit export (marker to stdout)', 'ours.mainHit.build.export')
  row('ours: post, unchanged (extract, no upload), whole step', 'ours.postUnchanged', ...E)
  const notReadNote = notRead === undefined ? '' : `; ${fmt(notRead, 0)} of 3 unchanged since inject, not read`
  row(`    extract (log "Extracted ... in", ${extractModes}${notReadNote})`, 'ours.postUnchanged.extract', ...E)
  row('      BuildKit RUN step', 'ours.postUnchanged.build.run')
  row('ours, fallback path: inject (log "Injected ... in", build context)', 'fallback.inject', ...I)
  row('ours, fallback path: extract (log "Extracted ... in", build exporter)', 'fallback.extract', ...E)
  row('floor: host tar -c | cat', 'floor.host-tar')
  row('floor: host tar -c | zstd -T0 --long=30', 'floor.host-tar-zstd')
  for (const v of INJECT_VARIANTS) row(`floor inject: ${v}${v === floor.bestInject ? ' (best = floor)' : ''}`, `floor.inject-${v}`, ...I)
  for (const v of EXTRACT_VARIANTS) row(`floor extract: ${v}${v === floor.bestExtract ? ' (best = floor)' : ''}`, `floor.extract-${v}`, ...E)
  row('per-mount inject (3 builds, dir context)', 'perMount.inject', ...I)
  row('    its builds', 'perMount.inject.build')
  row('    its rm -rf of the sources', 'perMount.inject.clean')
  row('per-mount extract (3 builds + docker cp + untar)', 'perMount.extract', ...E)
  row('    its builds (--load)', 'perMount.extract.build')
  row('    docker create', 'perMount.extract.create')
  row('    docker cp | tar -x', 'perMount.extract.copy')

  const roundTrip = roundTripOf(samples, floor.inject + floor.extract, pmInject + pmExtract, hostTar)
  const width = Math.max(...rows.map(r => r.phase.length), 10)
  const lines = [
    '',
    `Bench: ${(plan.totalBytes / 1024 ** 2).toFixed(0)} MiB, ${plan.files} files (+${plan.hardlinks} hardlinks, ${plan.symlinks} symlinks) in 3 cache mounts; ${repeat} round(s), medians.`,
    `Ratios are against the same run's floor (inject phases: best single inject build "${floor.bestInject}"; extract/save phases: best single export build "${floor.bestExtract}"),`,
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
    `  ours, whole steps (main hit + post unchanged) ${fmt(roundTrip.oursStepsUnchangedVsFloor)} × floor, ${fmt(roundTrip.oursStepsUnchangedVsPerMount)} × per-mount`,
    `  ours, fallback path (context + exporter)      ${fmt(roundTrip.fallbackVsFloor)} × floor, ${fmt(roundTrip.fallbackVsPerMount)} × per-mount`,
    `  per-mount (inject + extract)                  ${fmt(roundTrip.perMountVsFloor)} × floor`,
    `  floor (best inject + best extract)            ${fmt(roundTrip.floorVsHostTar, 1)} × host tar -c | cat`
  ]
  const overlap = samples.get('ours.mainHit.restoreOverlap')
  if (overlap !== undefined) lines.push('', `restore overlap: restore-to-ready ${fmt(overlap)} × (slowest restore + inject)`)
  return { text: lines.join('\n'), rows, roundTrip }
}

function roundTripOf(samples: Samples, floorTrip: number, perMountTrip: number, hostTar: number): Record<string, number> {
  const oursEngine = samples.need('ours.mainHit.inject') + samples.need('ours.postMiss.extract')
  const oursSteps = samples.need('ours.mainHit') + samples.need('ours.postMiss')
  const oursStepsSame = samples.need('ours.mainHit') + samples.need('ours.postUnchanged')
  const roundTrip: Record<string, number> = {
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
    oursStepsUnchangedVsFloor: oursStepsSame / floorTrip,
    oursStepsUnchangedVsPerMount: oursStepsSame / perMountTrip,
    perMountVsFloor: perMountTrip / floorTrip,
    floorVsHostTar: floorTrip / hostTar
  }
  const overlap = samples.get('ours.mainHit.restoreOverlap')
  if (overlap !== undefined) roundTrip.restoreToReadyVsSequential = overlap
  const fallbackInject = samples.get('fallback.inject')
  const fallbackExtract = samples.get('fallback.extract')
  if (fallbackInject !== undefined && fallbackExtract !== undefined) {
    roundTrip.fallbackSeconds = fallbackInject + fallbackExtract
    roundTrip.fallbackVsFloor = roundTrip.fallbackSeconds / floorTrip
    roundTrip.fallbackVsPerMount = roundTrip.fallbackSeconds / perMountTrip
  }
  return roundTrip
}

// ---------------------------------------------------------------------------
// Growth across sizes

/** The phases of the growth table: short column name, what it is, its seconds. */
const GROWTH_PHASES: Array<{ column: string; phase: string; seconds: (s: Samples) => number | undefined }> = [
  { column: 'postMiss', phase: 'ours: post on a miss, whole step', seconds: s => s.get('ours.postMiss') },
  { column: 'extract', phase: 'ours: extract (post on a miss)', seconds: s => s.get('ours.postMiss.extract') },
  { column: 'mainHit', phase: 'ours: main on a hit, whole step', seconds: s => s.get('ours.mainHit') },
  { column: 'inject', phase: 'ours: inject', seconds: s => s.get('ours.mainHit.inject') },
  { column: 'postSame', phase: 'ours: post unchanged, whole step', seconds: s => s.get('ours.postUnchanged') },
  { column: 'ready', phase: 'ours: restore to ready', seconds: s => s.get('ours.mainHit.restoreToReady') },
  { column: 'flInject', phase: 'floor inject (best variant)', seconds: s => floors(s).inject },
  { column: 'flExtract', phase: 'floor extract (best variant)', seconds: s => floors(s).extract },
  { column: 'pmInject', phase: 'per-mount inject', seconds: s => s.get('perMount.inject') },
  { column: 'pmExtract', phase: 'per-mount extract', seconds: s => s.get('perMount.extract') }
]

/** Round-trip ratios of the growth table: column name, roundTrip key. */
const GROWTH_RATIOS: Array<[string, string]> = [
  ['eng×fl', 'oursEngineVsFloor'],
  ['eng×pm', 'oursEngineVsPerMount'],
  ['steps×fl', 'oursStepsVsFloor'],
  ['steps×pm', 'oursStepsVsPerMount'],
  ['fb×fl', 'fallbackVsFloor'],
  ['fb×pm', 'fallbackVsPerMount']
]

export interface GrowthRow {
  sizeMiB: number
  bytes: number
  files: number
  /** Seconds per GiB of the dataset, by phase (GROWTH_PHASES column names). */
  secondsPerGiB: Record<string, number | undefined>
  roundTrip: Record<string, number | undefined>
}

export interface SizeOutcome {
  sizeMiB: number
  plan: DatasetPlan
  samples: Samples
  report: SizeReport
}

export function growthRows(sizes: SizeOutcome[]): GrowthRow[] {
  return sizes.map(({ sizeMiB, plan, samples, report }) => {
    const gib = plan.totalBytes / 1024 ** 3
    const secondsPerGiB = Object.fromEntries(GROWTH_PHASES.map(p => [p.column, perGiB(p.seconds(samples), gib)]))
    const roundTrip = Object.fromEntries(GROWTH_RATIOS.map(([, key]) => [key, report.roundTrip[key]]))
    return { sizeMiB, bytes: plan.totalBytes, files: plan.files, secondsPerGiB, roundTrip }
  })
}

function perGiB(seconds: number | undefined, gib: number): number | undefined {
  return seconds === undefined ? undefined : seconds / gib
}

export function growthTable(rows: GrowthRow[]): string {
  const columns = [...GROWTH_PHASES.map(p => p.column), ...GROWTH_RATIOS.map(([c]) => c)]
  const width = Math.max(...columns.map(c => c.length), 8)
  const cells = (r: GrowthRow): string[] => [
    ...GROWTH_PHASES.map(p => fmt(r.secondsPerGiB[p.column])),
    ...GROWTH_RATIOS.map(([, key]) => fmt(r.roundTrip[key]))
  ]
  const line = (mib: string, files: string, rest: string[]): string =>
    [mib.padStart(6), files.padStart(7), ...rest.map(c => c.padStart(width))].join('  ')
  const lines = [
    '',
    'Growth: seconds per GiB of the dataset at each size (flat across a row of sizes = cost grows linearly), and the round-trip ratios.',
    ...GROWTH_PHASES.map(p => `  ${p.column.padEnd(width)}  ${p.phase}`),
    `  ${'eng×fl'.padEnd(width)}  round trip, ours engine part (Injected + Extracted) × floor; eng×pm: × per-mount`,
    `  ${'steps×fl'.padEnd(width)}  round trip, ours whole steps (main hit + post miss) × floor; steps×pm: × per-mount`,
    `  ${'fb×fl'.padEnd(width)}  round trip, ours on the fallback path (build context + exporter) × floor; fb×pm: × per-mount`,
    '',
    line('MiB', 'files', columns),
    line(
      '-'.repeat(6),
      '-'.repeat(7),
      columns.map(() => '-'.repeat(width))
    ),
    ...rows.map(r => line(String(r.sizeMiB), String(r.files), cells(r)))
  ]
  const first = rows[0]
  const last = rows[rows.length - 1]
  if (first && last && first !== last) {
    const trend = GROWTH_PHASES.map(p => fmt(ratio(last.secondsPerGiB[p.column], first.secondsPerGiB[p.column])))
    lines.push(line('last', '÷ first', trend), '  (s/GiB at the largest size ÷ s/GiB at the smallest: 1.00 = linear, above 1 = worse than linear)')
  }
  return lines.join('\n')
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : a / b
}

// ---------------------------------------------------------------------------
// Delta saves (`--changed PERCENT`, delta.ts)

/** One action step of the delta scenario, as the table needs it. */
export interface DeltaStep {
  seconds: number
  /** "Extracted ... in" (post). */
  extract?: number
  /** "Injected ... in" (main). */
  inject?: number
  /** "Restore to ready" and its slowest restore (main). */
  ready?: number
  slowestRestore?: number
  /** Deltas of each restored chain (main; 0 for a full entry). */
  deltas: number[]
  /** BuildKit RUN step seconds of the step's generated build. */
  buildRun: number
}

/** One run: 0 is the first, full save; 1.. are the changed runs. */
export interface DeltaRun {
  run: number
  main: DeltaStep
  post: DeltaStep
  /** The tree main restored (its `restored-bytes`, all mounts); 0 for run 0. */
  treeBytes: number
  /** Bytes of the entries post committed, and how many. */
  uploadedBytes: number
  uploadedEntries: number
  /** Bytes of new content the run's user build wrote (added and rewritten files). */
  newBytes: number
  /** Per mount: `full`, `d<n>` (delta n of its chain) or `unchanged`. */
  saves: Record<string, string>
}

export interface DeltaFigures {
  sizeMiB: number
  files: number
  percent: number
  counts: { added: number; rewritten: number; removed: number }
  runs: DeltaRun[]
  perMountExtractSeconds: number
  /** Main restoring one full entry of the tree the chain of run `chainRun` holds. */
  fullMain: DeltaStep
  chainRun: number
  /** Committed entries of the mounts' key prefix after the last run. */
  keptBytes: number
  keptEntries: number
  keptByMount: Record<string, number>
  /** How many of them are full entries (bases). */
  keptFull: number
  treeBytesAtEnd: number
  /** One label per restore whose tree was the one the previous run left (a difference throws). */
  fidelity: string[]
  deleteSuperseded: boolean
}

/** The targets of the four ratios. */
export const DELTA_TARGETS = { uploaded: 0.03, postVsPerMount: 0.15, chainVsFull: 1.15, kept: 1.5 }

const pct = (n: number, digits = 2): string => `${(n * 100).toFixed(digits)} %`

function runSaves(r: DeltaRun): string {
  const kinds = [...new Set(Object.values(r.saves))]
  return kinds.length === 1 ? (kinds[0] as string) : Object.values(r.saves).join('/')
}

export function deltaReport(f: DeltaFigures): string {
  const first = f.runs[1] as DeltaRun
  const chain = f.runs[f.chainRun] as DeltaRun
  const changed = f.runs.slice(1)
  const deltaRuns = changed.filter(r => Object.values(r.saves).some(s => s.startsWith('d')))
  const ratios = {
    uploaded: first.uploadedBytes / first.treeBytes,
    postVsPerMount: first.post.seconds / f.perMountExtractSeconds,
    chainVsFull: chain.main.seconds / f.fullMain.seconds,
    kept: f.keptBytes / f.treeBytesAtEnd
  }
  const verdict = (value: number, target: number): string => (value <= target ? 'met' : 'missed')
  const kept = Object.entries(f.keptByMount)
    .map(([m, n]) => `${m} ${n}`)
    .join(', ')
  const rows: Array<[string, string, string, string]> = [
    [
      `bytes uploaded by a changed run's post (run 1, ${runSaves(first)}) × the mount`,
      pct(ratios.uploaded),
      `≤ ${pct(DELTA_TARGETS.uploaded, 0)}`,
      verdict(ratios.uploaded, DELTA_TARGETS.uploaded)
    ],
    [
      "that post (extract + save) × the per-mount method's extract of the same tree",
      ratios.postVsPerMount.toFixed(2),
      `≤ ${DELTA_TARGETS.postVsPerMount}`,
      verdict(ratios.postVsPerMount, DELTA_TARGETS.postVsPerMount)
    ],
    [
      `main (restore + inject) of a chain of ${chain.main.deltas.join('/')} deltas × main restoring one full entry of the same tree`,
      ratios.chainVsFull.toFixed(2),
      `≤ ${DELTA_TARGETS.chainVsFull}`,
      verdict(ratios.chainVsFull, DELTA_TARGETS.chainVsFull)
    ],
    [
      `entries kept after ${changed.length} changed runs (${f.keptEntries}: ${kept}) × the mount${f.deleteSuperseded ? ', delete-superseded' : ', nothing deleted'}`,
      ratios.kept.toFixed(2),
      `≤ ${DELTA_TARGETS.kept}`,
      verdict(ratios.kept, DELTA_TARGETS.kept)
    ],
    [
      'restores whose tree is the one the previous run left (content, owners, modes, mtimes, links)',
      `${f.fidelity.length} of ${f.fidelity.length}`,
      'all',
      'met'
    ]
  ]
  const share = (r: DeltaRun): number => r.uploadedBytes / r.treeBytes
  const uploads = deltaRuns.map(share)
  const newShare = changed.reduce((sum, r) => sum + r.newBytes / r.treeBytes, 0) / changed.length
  const byChain = changed.map(r => `${Math.max(...r.main.deltas)}: ${(r.main.seconds / f.fullMain.seconds).toFixed(2)}`).join(', ')
  const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined || b === 0 ? '?' : (a / b).toFixed(2))
  const fullPost = f.runs[0] as DeltaRun
  const lines = [
    '',
    `Delta saves: ${f.sizeMiB} MiB, ${f.files} files in 3 mounts; ${changed.length} changed runs after a full save, each adding ${f.counts.added}, rewriting ${f.counts.rewritten} and removing ${f.counts.removed} small files (${f.percent} % changed, ${f.percent / 2} % removed; seeded picks); one run.`,
    '',
    '| measure | ratio | target | |',
    '| --- | --- | --- | --- |',
    ...rows.map(r => `| ${r.join(' | ')} |`),
    '',
    `- saves, runs 0-${changed.length}: ${f.runs.map(runSaves).join(', ')}`,
    `- new content a changed run writes: ${pct(newShare)} of the mount; uploaded by the delta runs' posts: ${pct(Math.min(...uploads))}-${pct(Math.max(...uploads))}`,
    `- run 1's post: extract ${ratio(first.post.extract, first.post.seconds)} of the step (its RUN step ${ratio(first.post.buildRun, first.post.seconds)}), save the rest; a full save (run 0's post) × per-mount extract: ${ratio(fullPost.post.seconds, f.perMountExtractSeconds)}`,
    `- main of the chain × main of the full entry: inject ${ratio(chain.main.inject, f.fullMain.inject)}, slowest restore ${ratio(chain.main.slowestRestore, f.fullMain.slowestRestore)}, restore to ready ${ratio(chain.main.ready, f.fullMain.ready)}`,
    `- main × main of the full entry, by deltas in the chain restored: ${byChain}`,
    `- kept: ${f.keptFull} full entries and ${f.keptEntries - f.keptFull} deltas`
  ]
  const mounts = Object.keys(f.keptByMount).length
  if (f.deleteSuperseded && f.keptFull > mounts)
    lines.push(
      `- delete-superseded was given, yet ${f.keptFull - mounts} superseded full entries are kept: does this build of the action have the input?`
    )
  if (process.env.BMC_BENCH_SECONDS) {
    lines.push('', `per-mount extract ${f.perMountExtractSeconds.toFixed(2)} s; main of the full entry ${f.fullMain.seconds.toFixed(2)} s`)
    for (const r of f.runs)
      lines.push(
        `run ${r.run}: main ${r.main.seconds.toFixed(2)} s (inject ${r.main.inject?.toFixed(2) ?? '-'} s), post ${r.post.seconds.toFixed(2)} s (extract ${r.post.extract?.toFixed(2) ?? '-'} s), uploaded ${r.uploadedBytes} bytes in ${r.uploadedEntries} entries`
      )
  }
  return lines.join('\n')
}
