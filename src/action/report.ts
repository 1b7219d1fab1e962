import * as core from '@actions/core'

import type { RouteRecord } from '../builder/route.js'
import type { JobState } from '../core/job.js'
import { lookupKeys } from '../core/keys.js'
import type { SaveReport } from '../core/save.js'
import { isExactHit, isHit, matchedKeyOf, type MountState, type RestoreStatus, type SaveStatus } from '../core/status.js'
import { formatBytes, oneLine } from '../format.js'

/**
 * Everything users see of a job's result, derived from the mounts' explicit
 * statuses (core/status.ts) in one place: the action's outputs, the job
 * summary's rows and the CLI's results.
 */

/** One mount as the `mounts` output (and the CLI's restore result) shows it. */
export interface MountOutput {
  id: string
  key: string
  'matched-key': string
  hit: boolean
  'restored-bytes': number
}

export function mountOutputs(state: JobState): MountOutput[] {
  return state.mounts.map(m => ({
    id: m.spec.id,
    key: m.keys.base,
    'matched-key': matchedKeyOf(m.restore) ?? '',
    hit: isHit(m.restore),
    'restored-bytes': m.restore.kind === 'injected' ? m.restore.entry.bytes : 0
  }))
}

/**
 * The `cache-hit` output: every mount in the builder (with lookup-only:
 * found) from an entry saved for the same key files. false without mounts:
 * nothing was restored.
 */
export function cacheHit(state: JobState): boolean {
  return state.mounts.length > 0 && state.mounts.every(isExactHit)
}

/**
 * fail-on-cache-miss: the step's error when a mount found no entry at all
 * (neither for its key files nor a fallback), naming each such mount and the
 * keys looked for; undefined when every mount found one. Only a miss counts:
 * a cache that cannot be read, or an entry that fails to download, is cache
 * trouble (a warning), as in actions/cache.
 */
export function cacheMissError(state: JobState): string | undefined {
  const missed = state.mounts.filter(m => m.restore.kind === 'miss')
  if (missed.length === 0) return undefined
  const looked = missed.map(m => `${m.spec.id} (looked for ${lookupKeys(m.keys, state.exactMatch === true).join(', ')})`)
  return `No cache entry for ${missed.length} of ${state.mounts.length} mount(s), failing as fail-on-cache-miss is set: ${looked.join('; ')}`
}

export function setActionOutputs(state: JobState, serializedState: string): void {
  core.setOutput('cache-hit', String(cacheHit(state)))
  core.setOutput('mounts', JSON.stringify(mountOutputs(state)))
  // For the save sub-action (save/action.yml input `state`).
  core.setOutput('state', serializedState)
}

/** What the CLI's save result says per mount: what the store did, or nothing-to-save. */
export type StoreOutcome = 'saved' | 'exists' | 'not-saved' | 'failed' | 'nothing-to-save'

export function storeOutcome(save: SaveStatus | undefined): { outcome: StoreOutcome; key?: string } {
  if (save?.kind === 'saved') return { outcome: 'saved', key: save.key }
  if (save?.kind === 'unchanged' && save.how === 'exists' && save.key !== undefined) return { outcome: 'exists', key: save.key }
  if (save?.kind === 'skipped' && save.reason === 'not stored' && save.key !== undefined) return { outcome: 'not-saved', key: save.key }
  if (save?.kind === 'failed' && save.key !== undefined) return { outcome: 'failed', key: save.key }
  return { outcome: 'nothing-to-save' }
}

function restoreCell(status: RestoreStatus): string {
  switch (status.kind) {
    case 'injected':
      return `hit (${status.entry.matchedKey})`
    case 'miss':
    case 'pending':
      return 'miss'
    case 'found':
      return `found, lookup only (${status.matchedKey})`
    case 'restored':
      return `restored, not injected (${status.entry.matchedKey})`
    case 'refused':
      return `not read: ${status.reason}`
    case 'failed':
      return `failed: ${short(status.reason)}`
  }
}

function saveCell(save: SaveStatus | undefined, report: SaveReport | undefined): string {
  if (!report) return 'not saved by this step'
  if (!save) return ''
  switch (save.kind) {
    case 'saved':
      return `${formatBytes(save.bytes)} as ${save.key}`
    case 'unchanged':
      return 'unchanged'
    case 'skipped':
      return save.reason === 'empty' ? 'empty' : `skipped: ${save.reason}`
    case 'failed':
      return `failed: ${short(save.reason)}`
  }
}

const short = (text: string): string => oneLine(text, 100)

const secs = (ms: number | undefined): string => (ms === undefined ? '' : `${(ms / 1000).toFixed(1)} s`)

const routeCell = (r: RouteRecord | undefined, ms: number | undefined): string =>
  r === undefined ? secs(ms) : `${secs(ms)} (${r.route}${r.fallback !== undefined ? ', after a fallback' : ''})`

/** The job summary's table: one row per mount. */
export function summaryRows(state: JobState, report: SaveReport | undefined): string[][] {
  return state.mounts.map((m: MountState) => {
    const save = report?.saves.get(m.index)
    return [
      m.spec.id,
      m.spec.target,
      m.keys.base,
      restoreCell(m.restore),
      m.restore.kind === 'injected' ? formatBytes(m.restore.entry.bytes) : '',
      saveCell(save, report),
      secs(m.restoreMs),
      routeCell(state.inject, state.injectMs),
      routeCell(report?.extract, report?.extractMs),
      save?.kind === 'saved' ? secs(save.ms) : ''
    ]
  })
}

const SUMMARY_HEADER = ['id', 'target', 'key', 'restore', 'restored', 'saved', 'restore time', 'inject', 'extract', 'save time']

/** Job summary: one row per mount. Skipped quietly outside a runner (no summary file). */
export async function writeSummary(state: JobState, report: SaveReport | undefined): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  try {
    await core.summary
      .addHeading('BuildKit cache mounts', 3)
      .addTable([SUMMARY_HEADER.map(data => ({ data, header: true })), ...summaryRows(state, report)])
      .write()
  } catch (error) {
    core.debug(`No job summary: ${String(error)}`)
  }
}
