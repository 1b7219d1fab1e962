import * as core from '@actions/core'

import type { RouteRecord } from '../builder/route.js'
import type { Phase, RouteName } from '../builder/transport.js'
import type { JobState } from '../core/job.js'
import { lookupKeys } from '../core/keys.js'
import type { SaveReport } from '../core/save.js'
import {
  hitKind,
  injectedEntry,
  isExactHit,
  isHit,
  matchedKeyOf,
  type HitKind,
  type MountState,
  type RestoreStatus,
  type RestoredEntry,
  type SaveStatus,
  type SkipReason
} from '../core/status.js'
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

/** The restored column's words: the tree's size, and the deltas it was composed from. */
function restoredWords(entry: RestoredEntry): string {
  const deltas = (entry.chain?.keys.length ?? 1) - 1
  return deltas > 0 ? `${formatBytes(entry.bytes)} (base + ${deltas} delta${deltas > 1 ? 's' : ''})` : formatBytes(entry.bytes)
}

/** The saved column's words: a size when saved, else why not, in a word or two (the notes under the table say more). */
export function saveWord(save: SaveStatus | undefined): string {
  switch (save?.kind) {
    case undefined:
      return ''
    case 'saved':
      return save.delta ? `${formatBytes(save.bytes)} (delta ${save.delta.sequence})` : formatBytes(save.bytes)
    case 'unchanged':
      return save.how === 'exists' ? 'already stored' : 'unchanged'
    case 'skipped':
      return SKIP_WORDS[save.reason]
    case 'failed':
      return 'failed'
  }
}

const SKIP_WORDS: Record<SkipReason, string> = {
  empty: 'empty',
  'over max-size': 'over max-size',
  'cache unavailable': 'no cache service',
  'cache read-only': 'read-only cache',
  'not extracted': 'not extracted',
  'not stored': 'not stored'
}

/** Why a mount was not saved, in one line (undefined: it was saved). */
function notSavedReason(save: SaveStatus | undefined): string | undefined {
  switch (save?.kind) {
    case undefined:
      return 'not extracted (the step ended first)'
    case 'saved':
      return undefined
    case 'unchanged':
      if (save.how === 'manifest') return 'unchanged since restore (the builder left it as inject did)'
      if (save.how === 'digest') return 'unchanged since restore (same content)'
      return 'the same content is stored already'
    case 'skipped':
      switch (save.reason) {
        case 'empty':
          return 'the mount is empty'
        case 'over max-size':
          return `over max-size${save.bytes !== undefined ? ` (${formatBytes(save.bytes)})` : ''}`
        case 'cache unavailable':
          return 'the cache service is not available'
        case 'cache read-only':
          return 'this job may not write to the cache (ACTIONS_CACHE_MODE)'
        case 'not extracted':
          return 'not in the extract stream'
        case 'not stored':
          return 'the cache service did not store it (the same entry may exist already)'
      }
      break
    case 'failed':
      return `failed: ${short(save.reason)}`
  }
}

/** Why a mount's entry is not in the builder, in one line (undefined: it is, or there was none). */
function notRestoredReason(status: RestoreStatus): string | undefined {
  switch (status.kind) {
    case 'injected':
    case 'miss':
      return undefined
    case 'pending':
      return 'the step ended before its restore'
    case 'restored':
      return 'restored, not injected'
    case 'found':
      return `lookup-only: found ${status.matchedKey}, nothing downloaded`
    case 'refused':
      return status.reason
    case 'failed':
      return `failed: ${short(status.reason)}`
  }
}

const short = (text: string): string => oneLine(text, 160)

const secs = (ms: number | undefined): string => (ms === undefined ? '' : `${(ms / 1000).toFixed(1)} s`)

/** The route in the words of the phase's log line. */
const ROUTE_WORDS: Record<Phase, Record<RouteName, string>> = {
  inject: { loopback: 'loopback stream', gateway: 'gateway stream', 'build-io': 'build context' },
  extract: { loopback: 'loopback stream', gateway: 'gateway stream', 'build-io': 'build exporter' }
}

function routeLine(phase: Phase, record: RouteRecord | undefined, ms: number | undefined): string {
  if (record === undefined) return ms === undefined ? `${phase}: did not run` : `${phase}: failed after ${secs(ms)}`
  const fallback = record.fallback !== undefined ? `, after the stream failed (${short(record.fallback)})` : ''
  return `${phase}: ${secs(ms)} through the ${ROUTE_WORDS[phase][record.route]}${fallback}`
}

/** A cell of a markdown table: one line, no column break. */
const cell = (text: string): string => text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|')
const row = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`
const code = (text: string): string => (text === '' ? '' : `\`${text.replace(/`/g, "'")}\``)

const SUMMARY_HEADER = ['mount', 'hit', 'restored', 'restore', 'saved', 'save']

/** The job summary's table: one row per mount, then the totals row. */
export function summaryRows(state: JobState, report: SaveReport | undefined): string[][] {
  const rows = state.mounts.map((m: MountState) => {
    const save = report?.saves.get(m.index)
    const entry = injectedEntry(m.restore)
    return [
      m.spec.id,
      hitKind(m),
      entry !== undefined ? restoredWords(entry) : '',
      secs(m.restoreMs),
      report ? saveWord(save) : '',
      save?.kind === 'saved' ? secs(save.ms) : ''
    ]
  })
  return [...rows, totalsRow(state, report)]
}

function totalsRow(state: JobState, report: SaveReport | undefined): string[] {
  const restored = state.mounts.reduce((sum, m) => sum + (injectedEntry(m.restore)?.bytes ?? 0), 0)
  const saves = [...(report?.saves.values() ?? [])].filter(s => s.kind === 'saved')
  const savedBytes = saves.reduce((sum, s) => sum + s.bytes, 0)
  return [
    `total (${state.mounts.length})`,
    hitCounts(state),
    formatBytes(restored),
    '',
    report ? `${formatBytes(savedBytes)} in ${saves.length}` : '',
    ''
  ]
}

/** `1 exact, 1 fallback, 0 miss`: the hit column's words counted, as the totals row and the CLI's restore line show them. */
export function hitCounts(state: JobState): string {
  const kinds = state.mounts.map(hitKind)
  const count = (k: HitKind): number => kinds.filter(x => x === k).length
  return `${count('exact')} exact, ${count('fallback')} fallback, ${count('miss')} miss`
}

/** `2 unchanged, 1 empty`: the saved column's words of the mounts not saved, counted (the CLI's save line). */
export function notSavedCounts(state: JobState, report: SaveReport): string {
  const counts = new Map<string, number>()
  for (const m of state.mounts) {
    const save = report.saves.get(m.index)
    if (save?.kind === 'saved') continue
    const word = saveWord(save) || 'not extracted'
    counts.set(word, (counts.get(word) ?? 0) + 1)
  }
  return [...counts].map(([word, n]) => `${n} ${word}`).join(', ')
}

/** Per mount, why it was not restored or not saved; mounts with the same reason share a line. */
function notes(state: JobState, report: SaveReport | undefined): string[] {
  const byText = new Map<string, string[]>()
  const add = (text: string, id: string): void => {
    const ids = byText.get(text)
    if (ids) ids.push(id)
    else byText.set(text, [id])
  }
  for (const m of state.mounts) {
    const notRestored = notRestoredReason(m.restore)
    if (notRestored !== undefined) add(`not restored: ${notRestored}`, m.spec.id)
    if (report) {
      const notSaved = notSavedReason(report.saves.get(m.index))
      if (notSaved !== undefined) add(`not saved: ${notSaved}`, m.spec.id)
    }
  }
  return [...byText].map(([text, ids]) => `${ids.map(code).join(', ')}: ${text}`)
}

function keysBlock(state: JobState, report: SaveReport | undefined): string[] {
  const lines = ['<details><summary>Keys</summary>', '', row(['mount', 'key', 'restored from', 'saved as']), row(['---', '---', '---', '---'])]
  for (const m of state.mounts) {
    const save = report?.saves.get(m.index)
    const savedAs = save?.kind === 'saved' || (save?.kind === 'unchanged' && save.how === 'exists') ? (save.key ?? '') : ''
    lines.push(row([m.spec.id, code(m.keys.base), code(matchedKeyOf(m.restore) ?? ''), code(savedAs)]))
  }
  lines.push('', '</details>')
  return lines
}

/**
 * The job summary as markdown: a line for a failed step, the table (one row
 * per mount and the totals), the route and time of each phase, why each
 * mount was not restored or not saved, and the keys folded away. `state`
 * is whatever the step knew when it ended (none: it failed before planning);
 * `report` is post's (none: the step does not save, or did not get there).
 */
export function summaryMarkdown(state: JobState | undefined, report: SaveReport | undefined, failure?: string): string {
  const lines = ['### BuildKit cache mounts', '']
  if (failure !== undefined) lines.push(`**Failed:** ${oneLine(failure, 300)}`, '')
  if (state === undefined) return `${lines.join('\n')}\n`
  if (state.mounts.length === 0) {
    lines.push('No cache mounts to restore or save.')
    return `${lines.join('\n')}\n`
  }
  const header = report ? SUMMARY_HEADER : SUMMARY_HEADER.slice(0, 4)
  const width = header.length
  lines.push(row(header), row(header.map(() => '---')))
  for (const r of summaryRows(state, report)) lines.push(row(r.slice(0, width)))
  lines.push('')
  const injected = state.mounts.some(m => m.restore.kind === 'injected') || state.injectMs !== undefined
  lines.push(`- ${injected ? routeLine('inject', state.inject, state.injectMs) : 'inject: nothing to inject'}`)
  if (report) lines.push(`- ${routeLine('extract', report.extract, report.extractMs)}`)
  else lines.push('- save: not by this step')
  for (const note of notes(state, report)) lines.push(`- ${note}`)
  lines.push('', ...keysBlock(state, report))
  return `${lines.join('\n')}\n`
}

/**
 * Writes the job summary. Skipped quietly outside a runner (no summary
 * file); a summary that cannot be written is a debug line, never a failure.
 */
export async function writeSummary(state: JobState | undefined, report: SaveReport | undefined, failure?: string): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  try {
    await core.summary.addRaw(summaryMarkdown(state, report, failure)).write()
  } catch (error) {
    core.debug(`No job summary: ${String(error)}`)
  }
}
