import { CacheMissError, planAndLog } from '../action/main.js'
import { getInputs } from '../action/inputs.js'
import { cacheHit, cacheMissError, hitCounts, mountOutputs } from '../action/report.js'
import { runCommand } from '../builder/command.js'
import { findReach } from '../builder/reach.js'
import { restoreMounts } from '../core/restore.js'
import type { Services } from '../core/services.js'
import { formatBytes } from '../format.js'
import { storeName, type CommandContext } from './command-context.js'
import { removeStateFile, writeStateFile } from './state-file.js'

/**
 * `restore`: the action's main step. Plans (keys frozen now), writes the
 * state file before anything can fail so `save` always finds the keys,
 * restores and injects, then writes the state again with what was restored.
 */
export async function restoreCommand({ options, output, store, read, archiveRoot }: CommandContext): Promise<void> {
  const services: Services = { run: runCommand, cache: store, archiveRoot }
  await removeStateFile(options.state)
  const inputs = getInputs(read)
  const { state, engine } = await planAndLog(services, inputs)
  await writeStateFile(options.state, state)
  await restoreMounts(services, engine, state, await findReach(services.run, engine))
  await writeStateFile(options.state, state)
  const mounts = mountOutputs(state)
  if (options.json) {
    output.result(
      JSON.stringify(
        { command: 'restore', backend: storeName(store), 'cache-hit': cacheHit(state), state: options.state, mounts, warnings: output.warnings },
        null,
        2
      )
    )
  } else {
    const hits = mounts.filter(m => m.hit)
    const bytes = hits.reduce((sum, m) => sum + m['restored-bytes'], 0)
    output.info(
      `Restored ${hits.length} of ${mounts.length} mount(s) (${hitCounts(state)}), ${formatBytes(bytes)}, from ${storeName(store)}; state in ${options.state}`
    )
  }
  const missed = inputs.failOnCacheMiss ? cacheMissError(state) : undefined
  if (missed !== undefined) throw new CacheMissError(missed)
}
