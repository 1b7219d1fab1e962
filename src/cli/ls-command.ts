import { existsSync } from 'node:fs'
import { join } from 'node:path'

import { getInputs } from '../action/inputs.js'
import { keyIdOf } from '../core/job.js'
import { formatBytes } from '../format.js'
import { mountKeys } from '../core/keys.js'
import type { StoredEntry } from '../storage/managed.js'
import { formatAge, lastUse } from '../storage/prune.js'
import { keyPrefix, managedStore, type CommandContext } from './command-context.js'

/** One mount's key family (`<prefix>-<id>-<platform>-`), which all its entries start with. */
export interface MountFamily {
  id: string
  family: string
}

/**
 * The mounts the options name (or ./Dockerfile declares), as key families,
 * for grouping; none when the options name no mounts (then `ls` lists
 * every entry under the key prefix).
 */
export function mountFamilies(
  options: CommandContext['options'],
  read: CommandContext['read'],
  cwd: string = process.env.GITHUB_WORKSPACE || process.cwd()
): MountFamily[] {
  const named = (options.inputs.mounts ?? '') !== '' || (options.inputs.dockerfile ?? '') !== '' || existsSync(join(cwd, 'Dockerfile'))
  if (!named) return []
  const inputs = getInputs(read)
  return inputs.mounts.map(spec => {
    const keyId = keyIdOf(inputs, spec.id)
    return { id: spec.id, family: mountKeys(inputs.keyPrefix, keyId, inputs.platform, '').restoreKeys.at(-1) ?? '' }
  })
}

/** Entries per mount (in the order of the mounts), then those of no named mount under `null`. */
export function groupEntries(entries: readonly StoredEntry[], families: readonly MountFamily[]): { id: string | null; entries: StoredEntry[] }[] {
  const newestFirst = [...entries].sort((a, b) => b.created.getTime() - a.created.getTime() || (a.key < b.key ? -1 : 1))
  const groups = families.map(f => ({ id: f.id as string | null, family: f.family, entries: [] as StoredEntry[] }))
  const other: StoredEntry[] = []
  for (const e of newestFirst) {
    const group = groups.find(g => e.key.startsWith(g.family))
    if (group) group.entries.push(e)
    else other.push(e)
  }
  const out: { id: string | null; entries: StoredEntry[] }[] = groups.map(g => ({ id: g.id, entries: g.entries }))
  if (other.length > 0 || groups.length === 0) out.push({ id: null, entries: other })
  return out
}

/**
 * `ls`: what the store holds for this project, per mount: key, size, age,
 * last use. With --json one document of a fixed shape (every field always
 * present; usage.ts and the README show it).
 */
export async function lsCommand({ options, output, store, read }: CommandContext): Promise<void> {
  const managed = managedStore(store, 'ls')
  const entries = await managed.list(`${keyPrefix(read)}-`)
  const groups = groupEntries(entries, mountFamilies(options, read))
  const now = Date.now()
  const total = entries.reduce((sum, e) => sum + e.size, 0)
  if (options.json) {
    const rows = groups.flatMap(g =>
      g.entries.map(e => ({
        mount: g.id,
        key: e.key,
        size: e.size,
        created: e.created.toISOString(),
        'last-used': new Date(lastUse(e)).toISOString(),
        compression: e.compression ?? null
      }))
    )
    output.result(
      JSON.stringify({ command: 'ls', backend: managed.location, 'total-bytes': total, entries: rows, warnings: output.warnings }, null, 2)
    )
    return
  }
  const lines = [`${managed.location}: ${entryCount(entries.length)}, ${formatBytes(total)}`]
  for (const g of groups) {
    const bytes = g.entries.reduce((sum, e) => sum + e.size, 0)
    lines.push('', `${g.id ?? (groups.length === 1 ? 'all mounts' : 'other mounts')}: ${entryCount(g.entries.length)}, ${formatBytes(bytes)}`)
    if (g.entries.length === 0) lines.push('  (none)')
    const width = Math.max(0, ...g.entries.map(e => e.key.length))
    for (const e of g.entries) {
      const used = lastUse(e) > e.created.getTime() ? `, used ${formatAge(now - lastUse(e))} ago` : ''
      lines.push(`  ${e.key.padEnd(width)}  ${formatBytes(e.size).padStart(10)}  ${formatAge(now - e.created.getTime())} old${used}`)
    }
  }
  output.result(lines.join('\n'))
}

function entryCount(n: number): string {
  return `${n} ${n === 1 ? 'entry' : 'entries'}`
}
