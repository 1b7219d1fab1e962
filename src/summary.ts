import * as core from '@actions/core'

import { formatBytes } from './format.js'
import type { MainState } from './state.js'

/** What post did with one mount. */
export type SaveOutcome =
  | { kind: 'saved'; key: string; bytes: number; ms: number }
  | { kind: 'unchanged' | 'empty' | 'not-saved' | 'skipped'; bytes?: number; ms?: number; reason?: string }

export interface SaveReport {
  extractMs?: number
  outcomes: Map<number, SaveOutcome>
}

const secs = (ms: number | undefined): string => (ms === undefined ? '' : `${(ms / 1000).toFixed(1)} s`)

/** Job summary: one row per mount. Skipped quietly outside a runner (no summary file). */
export async function writeSummary(state: MainState, report: SaveReport | undefined): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const header = ['id', 'target', 'key', 'restore', 'restored', 'saved', 'restore time', 'inject', 'extract', 'save time'].map(data => ({
    data,
    header: true
  }))
  const rows = state.mounts.map(m => {
    const outcome = report?.outcomes.get(m.index)
    const saved = !report
      ? 'not saved by this step'
      : !outcome
        ? ''
        : outcome.kind === 'saved'
          ? `${formatBytes(outcome.bytes)} as ${outcome.key}`
          : outcome.kind
    return [
      m.spec.id,
      m.spec.target,
      m.keys.base,
      m.restoredDigest !== undefined ? `hit (${m.matchedKey ?? ''})` : 'miss',
      m.restoredBytes !== undefined ? formatBytes(m.restoredBytes) : '',
      saved,
      secs(m.restoreMs),
      secs(state.injectMs),
      secs(report?.extractMs),
      secs(outcome?.ms)
    ]
  })
  try {
    await core.summary
      .addHeading('BuildKit cache mounts', 3)
      .addTable([header, ...rows])
      .write()
  } catch (error) {
    core.debug(`No job summary: ${String(error)}`)
  }
}
