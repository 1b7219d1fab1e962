import { runCommand } from '../command.js'
import { getInputs } from '../context.js'
import { formatBytes } from '../format.js'
import { planMounts, restoreMounts, type Services } from '../restore.js'
import type { MainState } from '../state.js'
import { storeName, type CommandContext } from './command-context.js'
import { writeStateFile } from './state-file.js'

/**
 * `restore`: the action's main step. Plans (keys frozen now), writes the
 * state file before anything can fail so `save` always finds the keys,
 * restores and injects, then writes the state again with what was restored.
 */
export async function restoreCommand({ options, output, store }: CommandContext): Promise<void> {
  const services: Services = { run: runCommand, cache: store }
  const state = await planMounts(services, getInputs())
  await writeStateFile(options.state, state)
  await restoreMounts(services, state)
  await writeStateFile(options.state, state)
  const mounts = restoredMounts(state)
  if (options.json) {
    output.result(
      JSON.stringify(
        { command: 'restore', backend: storeName(store), 'cache-hit': cacheHit(state), state: options.state, mounts, warnings: output.warnings },
        null,
        2
      )
    )
    return
  }
  const hits = mounts.filter(m => m.hit)
  const bytes = hits.reduce((sum, m) => sum + m['restored-bytes'], 0)
  output.info(`Restored ${hits.length} of ${mounts.length} mount(s), ${formatBytes(bytes)}, from ${storeName(store)}; state in ${options.state}`)
}

/** As the action's `mounts` output. */
function restoredMounts(state: MainState): { id: string; key: string; 'matched-key': string; hit: boolean; 'restored-bytes': number }[] {
  return state.mounts.map(m => ({
    id: m.spec.id,
    key: m.keys.base,
    'matched-key': m.matchedKey ?? '',
    hit: m.restoredDigest !== undefined,
    'restored-bytes': m.restoredBytes ?? 0
  }))
}

/** As the action's `cache-hit` output: every mount restored from an entry of the same key files. */
function cacheHit(state: MainState): boolean {
  return state.mounts.every(m => m.matchedKey !== undefined && m.matchedKey.startsWith(`${m.keys.base}-`) && m.restoredDigest !== undefined)
}
