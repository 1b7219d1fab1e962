import { getInputs } from '../action/inputs.js'
import { planAndLog } from '../action/main.js'
import { saveJob } from '../action/post.js'
import { notSavedCounts, storeOutcome } from '../action/report.js'
import { runCommand } from '../builder/command.js'
import type { Services } from '../core/services.js'
import { storeName, type CommandContext } from './command-context.js'
import { readStateFile } from './state-file.js'

/**
 * `save`: the action's post step (or the save/ sub-action without state).
 * With restore's state file the keys are those frozen at restore and mounts
 * unchanged since restore are skipped; without one it plans from the options.
 */
export async function saveCommand({ options, output, store, read, archiveRoot }: CommandContext): Promise<void> {
  const services: Services = { run: runCommand, cache: store, archiveRoot }
  const saved = await readStateFile(options.state)
  if (saved) output.info(`Using the keys restore froze in ${options.state}`)
  const state = saved ?? (await planAndLog(services, getInputs(read))).state
  const report = await saveJob(services, state)
  const mounts = state.mounts.map(m => {
    const { outcome, key } = storeOutcome(report?.saves.get(m.index))
    return { id: m.spec.id, key: m.keys.base, outcome, ...(key !== undefined ? { 'entry-key': key } : {}) }
  })
  if (options.json) {
    output.result(JSON.stringify({ command: 'save', backend: storeName(store), mounts, warnings: output.warnings }, null, 2))
    return
  }
  const stored = mounts.filter(m => m.outcome === 'saved').length
  const rest = report ? notSavedCounts(state, report) : ''
  output.info(`Saved ${stored} of ${mounts.length} mount(s) to ${storeName(store)}${rest !== '' ? ` (not saved: ${rest})` : ''}`)
}
