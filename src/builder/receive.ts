import type { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'

import { relativeEntryPath } from '../archive/entry.js'
import { splitExport, type SplitTarget } from '../archive/split.js'
import { ArchiveError } from '../errors.js'
import { deltaFile, STATUS_FILE } from './dockerfile.js'
import type { Extracted } from './transport.js'

/**
 * Splits one extract stream, whichever route brought it: the mount archives
 * (whole, or deltas with their removal lists: the stream's `delta.c<n>`
 * files, before any entry), and the status file naming the mounts the build
 * found unchanged. Every target must be one or the other.
 */
export async function receiveExtract(source: Readable, targets: SplitTarget[]): Promise<Extracted> {
  const unchanged = new Set<string>()
  const deleted = new Map<string, string[]>()
  const deltaDirs = new Map(targets.filter(t => t.delta).map(t => [deltaFile(t.dir), t.dir]))
  const summaries = await splitExport(
    source,
    targets,
    async (name, body) => {
      const deltaDir = deltaDirs.get(name)
      if (deltaDir !== undefined) {
        const paths = (await text(body)).split('\n').filter(p => p !== '')
        deleted.set(deltaDir, [...new Set(paths.map(p => relativeEntryPath(p)))].sort())
        return
      }
      if (name !== STATUS_FILE) return
      for (const line of (await text(body)).split('\n')) if (targets.some(t => t.dir === line)) unchanged.add(line)
    },
    dir => deleted.get(dir)
  )
  const missing = targets.filter(t => !summaries.has(t.dir) && !unchanged.has(t.dir))
  if (missing.length > 0) {
    throw new ArchiveError(
      'ARCHIVE_UNEXPECTED',
      `the extract stream has no ${missing.map(t => t.dir).join(', ')} and does not list them as unchanged`
    )
  }
  return { summaries, unchanged }
}
