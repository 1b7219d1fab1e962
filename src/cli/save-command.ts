import { runCommand } from '../command.js'
import { getInputs } from '../context.js'
import { planMounts, type Services } from '../restore.js'
import { saveMounts } from '../save.js'
import { storeName, type CommandContext } from './command-context.js'
import { recordingStore } from './recording-store.js'
import { readStateFile, rehomeArchives } from './state-file.js'

/**
 * `save`: the action's post step (or the save/ sub-action without state).
 * With restore's state file the keys are those frozen at restore and mounts
 * unchanged since restore are skipped; without one it plans from the options.
 */
export async function saveCommand({ options, output, store }: CommandContext): Promise<void> {
  const recorder = recordingStore(store)
  const services: Services = { run: runCommand, cache: recorder.store }
  const saved = await readStateFile(options.state)
  if (saved) output.info(`Using the keys restore froze in ${options.state}`)
  const state = saved ? rehomeArchives(saved) : await planMounts(services, getInputs())
  await saveMounts(services, state)
  const mounts = state.mounts.map(m => {
    const record = recorder.records.get(m.archivePath)
    return { id: m.spec.id, key: m.keys.base, outcome: record?.outcome ?? 'nothing-to-save', ...(record ? { 'entry-key': record.key } : {}) }
  })
  if (options.json) {
    output.result(JSON.stringify({ command: 'save', backend: storeName(store), mounts, warnings: output.warnings }, null, 2))
    return
  }
  const stored = mounts.filter(m => m.outcome === 'saved').length
  output.info(`Saved ${stored} of ${mounts.length} mount(s) to ${storeName(store)}`)
}
