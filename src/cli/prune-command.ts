import { errorMessage } from '../errors.js'
import { formatBytes } from '../format.js'
import { formatAge, lastUse, selectPrunable } from '../storage/prune.js'
import { keyPrefix, managedStore, type CommandContext } from './command-context.js'

/**
 * `prune`: removes entries under the key prefix unused for longer than
 * --max-age, then the least recently used until the rest fits --max-total,
 * and the leftovers of interrupted saves. A failed delete is a warning.
 */
export async function pruneCommand({ options, output, store, read }: CommandContext): Promise<void> {
  const managed = managedStore(store, 'prune')
  const entries = await managed.list(`${keyPrefix(read)}-`)
  const now = Date.now()
  const policy = {
    ...(options.maxAgeMs !== undefined ? { maxAgeMs: options.maxAgeMs } : {}),
    ...(options.maxTotalBytes !== undefined ? { maxTotalBytes: options.maxTotalBytes } : {})
  }
  const doomed = selectPrunable(entries, policy, now)
  const removed: typeof doomed = []
  for (const e of doomed) {
    const what = `${e.key} (${formatBytes(e.size)}, unused for ${formatAge(now - lastUse(e))})`
    if (options.dryRun) {
      output.info(`would remove ${what}`)
      removed.push(e)
      continue
    }
    try {
      await managed.delete(e.key)
      output.info(`removed ${what}`)
      removed.push(e)
    } catch (error) {
      output.warning(`cannot remove ${e.key}: ${errorMessage(error)}`)
    }
  }
  const swept = options.dryRun || !managed.sweep ? 0 : await managed.sweep()
  const removedBytes = removed.reduce((sum, e) => sum + e.size, 0)
  const keptBytes = entries.reduce((sum, e) => sum + e.size, 0) - removedBytes
  if (options.json) {
    const rows = removed.map(e => ({ key: e.key, size: e.size, created: e.created.toISOString(), 'last-used': new Date(lastUse(e)).toISOString() }))
    output.result(
      JSON.stringify(
        {
          command: 'prune',
          backend: managed.location,
          'dry-run': options.dryRun,
          removed: rows,
          'removed-bytes': removedBytes,
          kept: entries.length - removed.length,
          'kept-bytes': keptBytes,
          'swept-bytes': swept,
          warnings: output.warnings
        },
        null,
        2
      )
    )
    return
  }
  const verb = options.dryRun ? 'Would remove' : 'Removed'
  const sweptNote = swept > 0 ? `; ${formatBytes(swept)} of leftovers from interrupted saves swept` : ''
  output.info(
    `${verb} ${removed.length} of ${entries.length} entries (${formatBytes(removedBytes)}), ${entries.length - removed.length} kept (${formatBytes(keptBytes)}) in ${managed.location}${sweptNote}`
  )
}
