import { ArchiveError } from '../errors.js'
import { forEachComposed } from './compose.js'
import type { ArchiveSummary } from './digest.js'
import { TreeDigest } from './digest.js'
import { defaultRoot, EntryGuard, readMountEntry, type EntryHeader } from './entry.js'
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
  const scan = new MountScan(limits.maxBytes)
  await forEachEntry(source, async (h, body) => {
    if (!scan.entry(readMountEntry(h))) return
    for await (const chunk of body) scan.content(chunk)
  })
  return scan.summary()
}

/**
 * The checks of one mount archive read entry by entry, wherever its bytes
 * come from (a file, or a download on its way into the builder): every
 * entry through the guard, the digest of the tree, the size limit.
 */
export class MountScan {
  private readonly guard = new EntryGuard()
  private readonly digest = new TreeDigest()
  private sawRoot = false

  constructor(private readonly maxBytes: number) {}

  /**
   * Checks an entry (throws ArchiveError for an unsafe one) and counts it.
   * False for a second root entry, which is ignored: the tree injected is
   * the first root only, with a default root when none comes first.
   */
  entry(e: EntryHeader): boolean {
    this.guard.check(e)
    if (e.path === '') {
      if (this.sawRoot) return false
    } else if (!this.sawRoot) {
      this.digest.header(defaultRoot())
    }
    this.sawRoot = true
    this.digest.header(e)
    this.checkLimit()
    return true
  }

  content(chunk: Buffer): void {
    this.digest.content(chunk)
    this.checkLimit()
  }

  /** The archive's summary; throws when it held no entry at all. */
  summary(): ArchiveSummary {
    if (this.digest.entries === 0) throw new ArchiveError('ARCHIVE_UNEXPECTED', 'archive has no entries')
    return { digest: this.digest.digest(), bytes: this.digest.bytes, entries: this.digest.entries }
  }

  private checkLimit(): void {
    if (this.digest.bytes + this.digest.entries * HEADER_BYTES > this.maxBytes) throw tooLarge(this.maxBytes)
  }
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
