import { mkdir, rm } from 'node:fs/promises'
import { dirname } from 'node:path'

import * as core from '@actions/core'

import type { ArchiveSummary } from './archive.js'
import { getInputs, InputName } from './context.js'
import { forEachLimit, TRANSFER_CONCURRENCY } from './concurrency.js'
import { exportDir } from './dockerfile.js'
import { extractMounts, type ExtractResult } from './extract.js'
import { errorMessage } from './errors.js'
import { formatBytes, seconds } from './format.js'
import { saveKey } from './keys.js'
import { log } from './log.js'
import { planMounts, realServices, type Services } from './restore.js'
import { generatedBuildArgs, loadMainState, parseMainState, type MainState, type MountState } from './state.js'
import { writeSummary, type SaveOutcome, type SaveReport } from './summary.js'

/** Post step of the combined action: saves what main planned. Never fails the job. */
export async function runPost(services: Services = realServices): Promise<void> {
  let state: MainState | undefined
  try {
    state = loadMainState()
  } catch (error) {
    log.warning(`Not saving cache mounts: ${errorMessage(error)}`)
    return
  }
  if (!state) {
    log.info('The main step did not run to the point of restoring; nothing to save.')
    return
  }
  if (!state.save) {
    log.info('save is false: cache mounts are not saved.')
    return
  }
  await saveMounts(services, state)
}

/**
 * The save sub-action: takes the restore step's `state` output when given
 * (frozen keys, restored digests), else plans from its own inputs. Input
 * errors fail the step; everything else is a warning.
 */
export async function runSaveOnly(services: Services = realServices): Promise<void> {
  const given = core.getInput(InputName.state).trim()
  let state: MainState | undefined
  if (given !== '') {
    try {
      state = parseMainState(given)
    } catch (error) {
      throw new Error(`Input "${InputName.state}": ${errorMessage(error)}; pass the restore step's state output unchanged`)
    }
  }
  state ??= await planMounts(services, getInputs())
  await saveMounts(services, state)
}

/** Extracts every mount in one build, splits the output per mount, saves the changed ones. */
export async function saveMounts(services: Services, state: MainState): Promise<void> {
  if (state.mounts.length === 0) return
  if (!services.cache.available()) {
    log.warning('The cache service is not available: cache mounts are not saved.')
    return
  }
  if (!services.cache.writable()) {
    log.notice('This job may not write to the cache (ACTIONS_CACHE_MODE); cache mounts are not saved.')
    return
  }
  const report: SaveReport = { outcomes: new Map() }
  try {
    const extracted = await log.group('Extract from the builder', async () => extract(services, state, report))
    if (extracted) await log.group('Save cache entries', async () => saveAll(services, state, extracted, report))
  } finally {
    await Promise.all(state.mounts.map(m => rm(m.archivePath, { recursive: true, force: true })))
  }
  await writeSummary(state, report)
}

async function extract(services: Services, state: MainState, report: SaveReport): Promise<ExtractResult | undefined> {
  const { mounts } = state
  const started = Date.now()
  try {
    await Promise.all(mounts.map(m => mkdir(dirname(m.archivePath), { recursive: true })))
    const result = await extractMounts(services.run, {
      engine: state.engine,
      image: state.utilityImage,
      mounts: mounts.map(m => ({ index: m.index, spec: m.spec })),
      targets: mounts.map(m => ({ dir: exportDir(m.index), archivePath: m.archivePath, ...(m.spec.exclude ? { exclude: m.spec.exclude } : {}) })),
      buildArgs: generatedBuildArgs(state),
      // Inject already found host networking refused: no second try.
      choice: state.loopback === false && (state.extractVia ?? 'auto') === 'auto' ? 'export' : (state.extractVia ?? 'auto'),
      manifests: new Map(mounts.flatMap(m => (m.manifest !== undefined && m.restoredDigest !== undefined ? [[m.index, m.manifest]] : [])))
    })
    const bytes = [...result.summaries.values()].reduce((sum, s) => sum + s.bytes, 0)
    const same = result.unchanged.size > 0 ? `; ${result.unchanged.size} unchanged since inject, not read` : ''
    log.info(
      `Extracted ${result.summaries.size} mount(s), ${formatBytes(bytes)} in ${seconds(started)} (${result.mode === 'loopback' ? 'loopback stream' : 'build exporter'}${same})`
    )
    return result
  } catch (error) {
    log.warning(`Could not extract the cache mounts from the builder; nothing is saved: ${errorMessage(error)}`)
    return undefined
  } finally {
    report.extractMs = Date.now() - started
  }
}

async function saveAll(services: Services, state: MainState, extracted: ExtractResult, report: SaveReport): Promise<void> {
  await forEachLimit(state.mounts, TRANSFER_CONCURRENCY, async m => {
    const dir = exportDir(m.index)
    if (extracted.unchanged.has(dir)) {
      log.info(`${m.spec.id}: unchanged since restore (${m.matchedKey}; its manifest is the one inject left), nothing to save`)
      report.outcomes.set(m.index, { kind: 'unchanged', bytes: m.restoredBytes ?? 0 })
      return
    }
    const summary = extracted.summaries.get(dir)
    if (!summary) return
    const outcome = await saveOne(services, m, summary, m.spec.maxSize ?? state.maxSize)
    report.outcomes.set(m.index, outcome)
  })
}

async function saveOne(services: Services, m: MountState, summary: ArchiveSummary, maxSize: number | undefined): Promise<SaveOutcome> {
  if (summary.entries <= 1) {
    log.info(`${m.spec.id}: the mount is empty, nothing to save`)
    return { kind: 'empty' }
  }
  if (summary.digest === m.restoredDigest) {
    log.info(`${m.spec.id}: unchanged since restore (${m.matchedKey}), nothing to save`)
    return { kind: 'unchanged', bytes: summary.bytes }
  }
  if (maxSize !== undefined && summary.bytes > maxSize) {
    log.warning(`${m.spec.id}: ${formatBytes(summary.bytes)} is over max-size ${formatBytes(maxSize)}, not saved (exclude paths to make it smaller)`)
    return { kind: 'skipped', bytes: summary.bytes, reason: 'over max-size' }
  }
  const key = saveKey(m.keys, summary.digest)
  const started = Date.now()
  try {
    // Entries are immutable: the same content saved by an earlier run or a parallel job is already there.
    if (await services.cache.exists(m.archivePath, key)) {
      log.info(`${m.spec.id}: ${key} is already in the cache, nothing to save`)
      return { kind: 'unchanged', bytes: summary.bytes }
    }
    const saved = await services.cache.save(m.archivePath, key)
    const ms = Date.now() - started
    if (!saved) {
      log.info(`${m.spec.id}: not saved under ${key} (see above; an entry with this exact content may exist already)`)
      return { kind: 'not-saved', ms }
    }
    log.info(`${m.spec.id}: saved ${key} (${formatBytes(summary.bytes)}, ${seconds(started)})`)
    return { kind: 'saved', key, bytes: summary.bytes, ms }
  } catch (error) {
    log.warning(`${m.spec.id}: cannot save the cache entry: ${errorMessage(error)}`)
    return { kind: 'not-saved', reason: errorMessage(error) }
  }
}
