import { createHash, type Hash } from 'node:crypto'

import type { EntryHeader } from './entry.js'

export interface ArchiveSummary {
  /** Content digest (see TreeDigest): equal trees give equal digests. */
  digest: string
  /** Bytes of file content. */
  bytes: number
  entries: number
}

/**
 * Digest of a tree that does not depend on the order of the entries (tar
 * writers list directories in readdir order, which differs between
 * filesystems) nor on which name of a hardlinked file comes first (a
 * hardlink counts as a file with its target's content). Each entry's path,
 * type, mode, owner, mtime (seconds), symlink target and content hash go into
 * one SHA-256; the digest is their sum mod 2^256, a multiset hash. The
 * root's mtime is left out: it moves whenever anything is added and says
 * nothing on its own.
 */
export class TreeDigest {
  private sum = 0n
  private pending?: { record: string; content: Hash; path: string; size: number }
  private readonly files = new Map<string, { hash: string; size: number }>()
  bytes = 0
  entries = 0

  header(h: EntryHeader): void {
    this.finish()
    const mtime = h.path === '' ? 0 : Math.floor(h.mtime.getTime() / 1000)
    const linked = h.type === 'link' ? this.files.get(h.linkname ?? '') : undefined
    const type = h.type === 'link' ? 'file' : h.type
    const size = linked ? linked.size : h.size
    const fields = [type, h.path, (h.mode & 0o7777).toString(8), h.uid, h.gid, mtime, size, h.type === 'symlink' ? (h.linkname ?? '') : '']
    const record = fields.join('\0')
    this.entries++
    if (h.type === 'file') {
      this.pending = { record, content: createHash('sha256'), path: h.path, size }
    } else {
      this.add(record, linked?.hash ?? '')
    }
  }

  /** A path a delta removes: part of what makes two deltas different. */
  removed(path: string): void {
    this.finish()
    this.add(`removed\0${path}`, '')
  }

  content(chunk: Buffer): void {
    this.pending?.content.update(chunk)
    this.bytes += chunk.length
  }

  digest(): string {
    this.finish()
    return this.sum.toString(16).padStart(64, '0')
  }

  private finish(): void {
    if (!this.pending) return
    const { record, content, path, size } = this.pending
    this.pending = undefined
    const hash = content.digest('hex')
    this.files.set(path, { hash, size })
    this.add(record, hash)
  }

  private add(record: string, contentHash: string): void {
    const entry = createHash('sha256').update(record).update('\n').update(contentHash).digest('hex')
    this.sum = (this.sum + BigInt(`0x${entry}`)) & ((1n << 256n) - 1n)
  }
}
