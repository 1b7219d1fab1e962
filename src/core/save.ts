import { mkdir, readFile, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

import { createHash } from 'node:crypto'

import type { SplitSummary } from '../archive/split.js'
import { deltaArg, exportDir, listingFile, manifestArg, MANIFEST } from '../builder/dockerfile.js'
import type { Engine } from '../builder/engine.js'
import { buildFailureReason } from '../builder/image-pull.js'
import { routePlan, type RouteRecord, type StreamReach } from '../builder/route.js'
import { runPhase, type Extracted } from '../builder/transport.js'
import { errorMessage } from '../errors.js'
import { formatBytes, seconds } from '../format.js'
import { log, withLabel } from '../log.js'
import { deleteChain } from '../storage/supersede.js'
import { forEachLimit, TRANSFER_CONCURRENCY } from './concurrency.js'
import { deltaBudget, ownBase } from './delta-policy.js'
import { archivePathOf, generatedBuildArgs, listingPathOf, type JobState } from './job.js'
import { deltaKey, saveKey } from './keys.js'
import { archiveRootOf, type Services } from './services.js'
import { injectedEntry, type MountState, type SaveStatus } from './status.js'

/** What post did: one save status per mount (by index), the extract's time and route. */
export interface SaveReport {
  saves: Map<number, SaveStatus>
  extractMs?: number
  extract?: RouteRecord
}

/**
 * Post's work: extracts every mount in one build (skipping in the builder
 * those whose manifest is the one inject left), splits the stream per mount
 * and saves the changed ones. Every mount gets a save status; cache and
 * engine trouble are warnings, never thrown.
 */
export async function saveMounts(services: Services, engine: Engine, state: JobState, reach: StreamReach | undefined): Promise<SaveReport> {
  const report: SaveReport = { saves: new Map() }
  const root = archiveRootOf(services)
  const skipAll = (reason: 'cache unavailable' | 'cache read-only'): SaveReport => {
    for (const m of state.mounts) report.saves.set(m.index, { kind: 'skipped', reason })
    return report
  }
  if (state.mounts.length === 0) return report
  if (!services.cache.available()) {
    log.warning('The cache service is not available: cache mounts are not saved.')
    return skipAll('cache unavailable')
  }
  if (!services.cache.writable()) {
    log.notice('This job may not write to the cache (ACTIONS_CACHE_MODE); cache mounts are not saved.')
    return skipAll('cache read-only')
  }
  try {
    const extracted = await log.group('Extract from the builder', async () => extract(services, engine, state, reach, root, report))
    if (extracted) await log.group('Save cache entries', async () => saveAll(services, state, root, extracted, report))
  } finally {
    await Promise.all(
      state.mounts.flatMap(m =>
        [archivePathOf(root, state, m.spec.id), listingPathOf(root, state, m.spec.id)].map(async p => rm(p, { recursive: true, force: true }))
      )
    )
  }
  return report
}

/** Extract build arguments: each injected mount's manifest (validated: it reaches a shell test). */
function manifestArgs(mounts: MountState[]): Record<string, string> {
  const args: Record<string, string> = {}
  for (const m of mounts) {
    const manifest = m.restore.kind === 'injected' ? m.restore.manifest : undefined
    if (manifest !== undefined && MANIFEST.test(manifest)) args[manifestArg(m.index)] = manifest
  }
  return args
}

/**
 * Input delete-superseded: a new full entry replaces the chain the mount
 * was restored from (its base and every delta on it, other jobs' too), when
 * that chain is of the same key files. Entries of other key files may still
 * serve other branches, and are left to the cache's own eviction. Any
 * failure is one warning: the new entry is saved either way.
 */
async function deleteSuperseded(services: Services, state: JobState, m: MountState, saved: string): Promise<void> {
  const base = ownBase(m.keys, injectedEntry(m.restore)?.chain)
  if (state.deleteSuperseded !== true || base === undefined || base === saved) return
  try {
    const { deleted } = await deleteChain(services.cache, base, [saved])
    log.info(`${m.spec.id}: deleted ${deleted.length} superseded entr${deleted.length === 1 ? 'y' : 'ies'} (${base} and its deltas)`)
  } catch (error) {
    log.warning(`${m.spec.id}: saved ${saved}, but could not delete the entries it supersedes: ${errorMessage(error)}`)
  }
}

/** What extract needs to send a mount as a delta: its budget, inject's listing, and the chain it continues. */
interface DeltaRequest {
  budget: number
  listing: Buffer
  chain: string[]
}

/**
 * The mounts extract may send as deltas (delta-policy.ts decides which and
 * how big), with inject's listing of each. A listing is used only when its
 * md5 is the manifest inject reported for the mount, so it is this job's.
 */
async function deltaRequests(root: string, state: JobState): Promise<Map<number, DeltaRequest>> {
  const requests = new Map<number, DeltaRequest>()
  if (state.deltas === false) return requests
  for (const m of state.mounts) {
    if (m.restore.kind !== 'injected' || m.restore.manifest === undefined) continue
    const chain = m.restore.entry.chain
    const budget = chain === undefined ? undefined : deltaBudget(m.keys, chain)
    if (chain === undefined || budget === undefined) continue
    const listing = await readFile(listingPathOf(root, state, m.spec.id)).catch(() => undefined)
    if (listing === undefined || createHash('md5').update(listing).digest('hex') !== m.restore.manifest) continue
    requests.set(m.index, { budget, listing, chain: chain.keys })
  }
  return requests
}

async function extract(
  services: Services,
  engine: Engine,
  state: JobState,
  reach: StreamReach | undefined,
  root: string,
  report: SaveReport
): Promise<Extracted | undefined> {
  const { mounts } = state
  const started = Date.now()
  try {
    await Promise.all(mounts.map(m => mkdir(dirname(archivePathOf(root, state, m.spec.id)), { recursive: true })))
    const deltas = await deltaRequests(root, state)
    const deltaArgs = Object.fromEntries([...deltas].map(([index, d]) => [deltaArg(index), String(d.budget)]))
    const job = {
      engine,
      image: state.utilityImage,
      mounts: mounts.map(m => ({ index: m.index, spec: m.spec })),
      targets: mounts.map(m => {
        const chain = deltas.get(m.index)?.chain
        return {
          dir: exportDir(m.index),
          archivePath: archivePathOf(root, state, m.spec.id),
          ...(m.spec.exclude ? { exclude: m.spec.exclude } : {}),
          ...(chain ? { delta: { base: chain[0] ?? '', chain, sequence: chain.length } } : {})
        }
      }),
      buildArgs: { ...generatedBuildArgs(state), ...manifestArgs(mounts), ...deltaArgs },
      contextFiles: new Map([...deltas].map(([index, d]) => [listingFile(index), d.listing])),
      bytes: mounts.reduce((sum, m) => sum + (injectedEntry(m.restore)?.bytes ?? 0), 0)
    }
    // Inject already found the stream not working: no second try.
    const plan = routePlan(state.extractVia, reach, state.inject?.fallback !== undefined)
    const { result, transport, fallbackReason } = await runPhase(plan, 'extract', t => t.extract(services.run, job))
    report.extract = { route: transport.route, ...(fallbackReason !== undefined ? { fallback: fallbackReason } : {}) }
    const bytes = [...result.summaries.values()].reduce((sum, s) => sum + s.bytes, 0)
    const asDeltas = [...result.summaries.values()].filter(s => s.deleted !== undefined).length
    const same =
      (result.unchanged.size > 0 ? `; ${result.unchanged.size} unchanged since inject, not read` : '') +
      (asDeltas > 0 ? `; ${asDeltas} as delta(s) of what changed` : '')
    log.info(`Extracted ${result.summaries.size} mount(s), ${formatBytes(bytes)} in ${seconds(started)} (${transport.label('extract')}${same})`)
    return result
  } catch (error) {
    log.warning(`Could not extract the cache mounts from the builder; nothing is saved: ${buildFailureReason(state.utilityImage, error)}`)
    for (const m of mounts) report.saves.set(m.index, { kind: 'failed', reason: `extract failed: ${errorMessage(error)}` })
    return undefined
  } finally {
    report.extractMs = Date.now() - started
  }
}

async function saveAll(services: Services, state: JobState, root: string, extracted: Extracted, report: SaveReport): Promise<void> {
  await forEachLimit(state.mounts, TRANSFER_CONCURRENCY, async m =>
    withLabel(m.spec.id, async () => {
      const dir = exportDir(m.index)
      const entry = injectedEntry(m.restore)
      if (extracted.unchanged.has(dir)) {
        log.info(`${m.spec.id}: unchanged since restore (${entry?.matchedKey ?? ''}; its manifest is the one inject left), nothing to save`)
        report.saves.set(m.index, { kind: 'unchanged', bytes: entry?.bytes ?? 0, how: 'manifest' })
        return
      }
      const summary = extracted.summaries.get(dir)
      if (!summary) {
        report.saves.set(m.index, { kind: 'skipped', reason: 'not extracted' })
        return
      }
      report.saves.set(m.index, await saveOne(services, state, root, m, summary))
    })
  )
}

async function saveOne(services: Services, state: JobState, root: string, m: MountState, summary: SplitSummary): Promise<SaveStatus> {
  const entry = injectedEntry(m.restore)
  const maxSize = m.spec.maxSize ?? state.maxSize
  const chain = entry?.chain?.keys
  const delta = summary.deleted !== undefined && chain !== undefined ? { sequence: chain.length, removed: summary.deleted } : undefined
  if (delta === undefined && summary.entries <= 1) {
    log.info(`${m.spec.id}: the mount is empty, nothing to save`)
    return { kind: 'skipped', reason: 'empty' }
  }
  if (delta === undefined && entry !== undefined && summary.digest === entry.digest) {
    log.info(`${m.spec.id}: unchanged since restore (${entry.matchedKey}), nothing to save`)
    return { kind: 'unchanged', bytes: summary.bytes, how: 'digest' }
  }
  // A delta is judged by the tree it makes: the restored one and what it adds.
  const treeBytes = delta === undefined ? summary.bytes : (entry?.bytes ?? 0) + summary.bytes
  if (maxSize !== undefined && treeBytes > maxSize) {
    log.warning(`${m.spec.id}: ${formatBytes(treeBytes)} is over max-size ${formatBytes(maxSize)}, not saved (exclude paths to make it smaller)`)
    return { kind: 'skipped', bytes: treeBytes, reason: 'over max-size' }
  }
  const key = delta !== undefined && chain !== undefined ? deltaKey(chain, summary.digest) : saveKey(m.keys, summary.digest)
  const archivePath = archivePathOf(root, state, m.spec.id)
  const started = Date.now()
  let stage: 'lookup' | 'upload' = 'lookup'
  try {
    // Entries are immutable: the same content saved by an earlier run or a parallel job is already there.
    if (await services.cache.exists(archivePath, key)) {
      log.info(`${m.spec.id}: ${key} is already in the cache, nothing to save`)
      return { kind: 'unchanged', bytes: summary.bytes, how: 'exists', key }
    }
    stage = 'upload'
    const saved = await services.cache.save(archivePath, key)
    if (!saved) {
      log.info(`${m.spec.id}: not saved under ${key} (see above; an entry with this exact content may exist already)`)
      return { kind: 'skipped', reason: 'not stored', key }
    }
    const what =
      delta === undefined
        ? formatBytes(summary.bytes)
        : `delta ${delta.sequence} of ${chain?.[0] ?? ''}: ${formatBytes(summary.bytes)} in ${summary.entries} changed entries, ${delta.removed} removed`
    log.info(`${m.spec.id}: saved ${key} (${what}, ${seconds(started)})`)
    const ms = Date.now() - started
    if (delta === undefined) await deleteSuperseded(services, state, m, key)
    return { kind: 'saved', key, bytes: summary.bytes, ms, ...(delta ? { delta } : {}) }
  } catch (error) {
    log.warning(`${m.spec.id}: cannot save the cache entry: ${errorMessage(error)}`)
    return { kind: 'failed', reason: errorMessage(error), ...(stage === 'upload' ? { key } : {}) }
  }
}
