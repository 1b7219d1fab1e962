import { ArchiveError } from '../errors.js'
import { forEachComposed } from './compose.js'
import type { ArchiveSummary } from './digest.js'
import { TreeDigest } from './digest.js'
import { defaultRoot, EntryGuard, readMountEntry } from './entry.js'
import { forEachEntry, HEADER_BYTES, openArchive, tooLarge } from './tar-io.js'

/**
 * Validates a mount archive and returns its digest. Any unsafe or unreadable
 * entry rejects the whole archive (ArchiveError), so callers treat the mount
 * as a cache miss. `maxBytes` bounds what the archive expands to: its
 * content plus 512 bytes per entry (a header's size), so a flood of empty
 * entries is bounded too.
 */
export async function scanMountArchive(archivePath: string, limits: { maxBytes: number }): Promise<ArchiveSummary> {
  const source = await openArchive(archivePath, limits.maxBytes)
  const guard = new EntryGuard()
  const digest = new TreeDigest()
  let sawRoot = false
  await forEachEntry(source, async (h, body) => {
    const entry = readMountEntry(h)
    guard.check(entry)
    // The same tree buildContext injects: the first root only, a default root when none comes first.
    if (entry.path === '') {
      if (sawRoot) return
    } else if (!sawRoot) {
      digest.header(defaultRoot())
    }
    sawRoot = true
    digest.header(entry)
    const overLimit = (): boolean => digest.bytes + digest.entries * HEADER_BYTES > limits.maxBytes
    if (overLimit()) throw tooLarge(limits.maxBytes)
    for await (const chunk of body) {
      digest.content(chunk)
      if (overLimit()) throw tooLarge(limits.maxBytes)
    }
  })
  if (digest.entries === 0) throw new ArchiveError('ARCHIVE_UNEXPECTED', 'archive has no entries')
  return { digest: digest.digest(), bytes: digest.bytes, entries: digest.entries }
}

/**
 * Validates a chain (a base archive and its deltas, see compose.ts) and
 * returns the digest of the tree it composes: the same digest a full
 * archive of that tree has. A chain that does not fit together is refused
 * (ArchiveError), like an unsafe archive.
 */
export async function scanChain(layers: readonly string[], limits: { maxBytes: number }): Promise<ArchiveSummary> {
  const [base] = layers
  if (base !== undefined && layers.length === 1) return scanMountArchive(base, limits)
  const digest = new TreeDigest()
  const overLimit = (): boolean => digest.bytes + digest.entries * HEADER_BYTES > limits.maxBytes
  await forEachComposed(
    layers,
    async (entry, body) => {
      digest.header(entry)
      if (overLimit()) throw tooLarge(limits.maxBytes)
      for await (const chunk of body ?? []) {
        digest.content(chunk)
        if (overLimit()) throw tooLarge(limits.maxBytes)
      }
    },
    limits.maxBytes
  )
  return { digest: digest.digest(), bytes: digest.bytes, entries: digest.entries }
}
