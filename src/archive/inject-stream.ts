import type { Readable } from 'node:stream'

import * as tar from 'tar-stream'

import { cachePath, DONE_MARKER, FIXUPS_FILE, START_MARKER } from '../builder/dockerfile.js'
import { forEachComposed, parentOf } from './compose.js'
import { ArchiveError } from '../errors.js'
import type { ArchiveSummary } from './digest.js'
import { defaultRoot, EntryGuard, readMountEntry, type EntryHeader, type TarHeader } from './entry.js'
import { MountScan } from './scan.js'
import { forEachEntry, oneChunk, openArchive, toTarHeader, writeEntry } from './tar-io.js'

/**
 * The tar stream the loopback inject build unpacks with busybox `tar -x -C
 * /bmc`: every restored mount's entries under its mount directory (`c<n>/`),
 * then a fix-up list. busybox tar differs from `cp -a` in three ways, and the
 * stream makes up for each:
 *  - it sets a directory's time when it meets the entry, and later entries
 *    inside change it: directories are sent after their contents (post-order,
 *    holding only the headers of the open directories, so memory stays at the
 *    tree's depth);
 *  - it creates hardlinks (and some symlinks) only at the end, touching their
 *    directories again, and
 *  - it gives symlinks no owner and no time, and reads no pax uid/gid:
 * those entries and directories go into the fix-up list (`FIXUPS_FILE`,
 * last in the stream) that the build applies with `chown -h` / `touch -h`.
 * Owner names are left out so the image's /etc/passwd can never remap ids.
 */
export type StreamMount = FileMount | LiveMount

/** A restored archive on disk, already checked by scanChain (it is checked again while streaming). */
export interface FileMount {
  index: number
  /** The mount archive, or the base of a chain. */
  archivePath: string
  /** Delta entries to apply on it, in order (compose.ts); checked with scanChain first. */
  deltas?: string[]
}

/**
 * An archive as it arrives (a download): checked entry by entry on its way
 * into the builder (MountScan). Anything wrong with it, found at any point,
 * drops the mount: the build empties it again (it gets no `ok.<n>` marker).
 */
export interface LiveMount {
  index: number
  live: LiveArchive
}

export interface LiveArchive {
  /** The mount archive's bytes; it must fail at its end when they were not all there (a digest trailer). */
  body: Readable
  maxBytes: number
  /** Called once: the checked tree's summary, or why the mount was dropped. */
  settle(outcome: { summary: ArchiveSummary } | { error: unknown }): void
}

/** Called once per mount the stream took: `error` when the mount was dropped. */
export type OnPacked = (index: number, error?: unknown) => void

/** Ids tar headers carry without pax records (busybox reads no pax uid/gid). */
const MAX_PLAIN_ID = 0o777777

/** Most paths one fix-up group hands to a single chown/touch (well below any argument-size limit). */
export const FIXUP_GROUP_PATHS = 200

/**
 * The fix-up list, in groups of entries that share what is to be set, so the
 * build runs one `chown -h` and one `touch -h` per group rather than per
 * entry: a line `E uid gid mtime count` (owner and time) or `D 0 0 mtime
 * count` (time only), then `count` absolute paths, one a line (archive paths
 * never contain a newline: EntryGuard refuses them). Every E group comes
 * before every D group: fixing owners and times of entries does not touch
 * their directories, but creating links did, before the list runs.
 */
class FixupList {
  private readonly groups = new Map<string, string[]>()
  entry(path: string, e: EntryHeader): void {
    this.add(`E ${e.uid} ${e.gid} ${seconds(e)}`, path)
  }
  dir(path: string, e: EntryHeader): void {
    this.add(`D 0 0 ${seconds(e)}`, path)
  }
  /** Takes over every entry of `other` (a mount's own list, once the mount is complete). */
  absorb(other: FixupList): void {
    for (const [head, paths] of other.groups) for (const p of paths) this.add(head, p)
  }
  text(): string {
    const lines: string[] = []
    const groups = [...this.groups].sort(([a], [b]) => Number(b.startsWith('E')) - Number(a.startsWith('E')))
    for (const [head, paths] of groups) {
      for (let i = 0; i < paths.length; i += FIXUP_GROUP_PATHS) {
        const chunk = paths.slice(i, i + FIXUP_GROUP_PATHS)
        lines.push(`${head} ${chunk.length}`, ...chunk)
      }
    }
    return lines.length > 0 ? `${lines.join('\n')}\n` : ''
  }
  private add(head: string, path: string): void {
    const list = this.groups.get(head)
    if (list) list.push(path)
    else this.groups.set(head, [path])
  }
}

function seconds(e: EntryHeader): number {
  return Math.floor(e.mtime.getTime() / 1000)
}

const isAncestor = (dir: string, path: string): boolean => dir === '' || path.startsWith(`${dir}/`)

/**
 * Streams the mounts as they arrive (`mounts` may still be downloading the
 * next one) and ends with the fix-up list, which therefore also tells the
 * build the stream is complete. Each mount's entries are followed by its
 * marker (DONE_MARKER); a mount that failed on the way (an unsafe entry, a
 * download cut short, a digest that does not match) gets none, its fix-ups
 * are left out, and the build empties it. A failure of the stream itself
 * (its destination gone) ends it.
 */
export function injectStream(mounts: AsyncIterable<StreamMount>, onPacked?: OnPacked): Readable {
  const pack = tar.pack()
  const fixups = new FixupList()
  const fill = async (): Promise<void> => {
    for await (const m of mounts) {
      const own = new FixupList()
      await writeEntry(pack, marker(`${START_MARKER}${m.index}`))
      let error: unknown
      let summary: ArchiveSummary | undefined
      try {
        summary = await packMount(pack, m, own)
      } catch (e) {
        error = e ?? new Error('unknown error')
      }
      if (pack.destroyed) {
        const closed = error ?? new Error('the inject stream was closed')
        if ('live' in m) m.live.settle({ error: closed })
        throw closed
      }
      if ('live' in m) m.live.settle(summary !== undefined ? { summary } : { error })
      onPacked?.(m.index, error)
      if (error !== undefined) continue
      fixups.absorb(own)
      await writeEntry(pack, marker(`${DONE_MARKER}${m.index}`))
    }
    const text = Buffer.from(fixups.text())
    await writeEntry(pack, { name: FIXUPS_FILE, type: 'file', mode: 0o100644, size: text.length, mtime: new Date(0) }, oneChunk(text))
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}

async function packMount(pack: tar.Pack, m: StreamMount, fixups: FixupList): Promise<ArchiveSummary | undefined> {
  const top = cachePath(m.index).replace(/^\/bmc\//, '')
  /** Directories whose entry is not sent yet: the root, then each open directory below it. */
  const open: EntryHeader[] = []
  /** Directories that links are created in at the end of `tar -x`. */
  const touched = new Set<string>()
  let sawRoot = false

  const absolute = (path: string): string => (path === '' ? cachePath(m.index) : `${cachePath(m.index)}/${path}`)
  const send = async (e: EntryHeader, body?: AsyncIterable<Buffer>): Promise<void> => {
    const name = e.path === '' ? `${top}/` : `${top}/${e.path}`
    const header = { ...toTarHeader(e, name, e.type === 'link' ? `${top}/${e.linkname ?? ''}` : e.linkname), uname: '', gname: '' }
    await writeEntry(pack, header, body)
    if (e.type === 'symlink' || e.uid > MAX_PLAIN_ID || e.gid > MAX_PLAIN_ID) fixups.entry(absolute(e.path), e)
    else if (e.type === 'directory' && touched.has(e.path)) fixups.dir(absolute(e.path), e)
  }
  const closeUntil = async (path: string): Promise<void> => {
    for (let d = open.at(-1); d && !isAncestor(d.path, path); d = open.at(-1)) await send(open.pop() as EntryHeader)
  }

  if ('archivePath' in m && m.deltas !== undefined && m.deltas.length > 0) {
    // A composed tree comes in no tree order (the deltas' entries after the base's): every
    // directory waits until the end, deepest first, so nothing is created in it afterwards.
    const dirs: EntryHeader[] = []
    await forEachComposed([m.archivePath, ...m.deltas], async (e, body) => {
      if (e.type === 'directory') {
        dirs.push(e)
        return
      }
      if (e.type === 'link' || e.type === 'symlink') touched.add(parentOf(e.path))
      await send(e, body)
    })
    dirs.sort((a, b) => (a.path < b.path ? 1 : a.path > b.path ? -1 : 0))
    for (const d of dirs) await send(d)
    return undefined
  }
  // A file was scanned before: the guard again is enough. A download is scanned here, digest and limit too.
  const scan = 'live' in m ? new MountScan(m.live.maxBytes) : undefined
  const guard = new EntryGuard()
  const source = 'live' in m ? m.live.body : await openArchive(m.archivePath)
  await forEachEntry(source, async (h, body) => {
    const e = readMountEntry(h)
    if (scan !== undefined) {
      if (!scan.entry(e)) return
    } else {
      guard.check(e)
      if (e.path === '' && sawRoot) return
    }
    if (e.path === '') {
      open.push(e)
      sawRoot = true
      return
    }
    if (!sawRoot) {
      open.push(defaultRoot())
      sawRoot = true
    }
    await closeUntil(e.path)
    if (e.type === 'directory') {
      open.push(e)
      return
    }
    if (e.type === 'link' || e.type === 'symlink') touched.add(parentOf(e.path))
    if (e.type !== 'file') return send(e)
    const cut: { error?: unknown } = {}
    await send(e, whole(body, e.size, cut, scan ? c => scan.content(c) : undefined))
    if (cut.error !== undefined) throw cut.error
  })
  if (!sawRoot) open.push(defaultRoot())
  while (open.length > 0) await send(open.pop() as EntryHeader)
  return scan?.summary()
}

/**
 * A file's content, always exactly `size` bytes: when its source fails (or
 * `onChunk` refuses a chunk) part way, the rest is zeros and `cut.error`
 * says why, so the tar stream stays whole and the builder drops the mount.
 */
async function* whole(body: AsyncIterable<Buffer>, size: number, cut: { error?: unknown }, onChunk?: (c: Buffer) => void): AsyncIterable<Buffer> {
  let sent = 0
  try {
    for await (const chunk of body) {
      onChunk?.(chunk)
      sent += chunk.length
      yield chunk
    }
    if (sent !== size) throw new ArchiveError('ARCHIVE_UNEXPECTED', `an entry ended after ${sent} of its ${size} bytes`)
  } catch (error) {
    cut.error = error
    for (let left = size - sent; left > 0; left -= ZERO_CHUNK.length) yield left >= ZERO_CHUNK.length ? ZERO_CHUNK : ZERO_CHUNK.subarray(0, left)
  }
}

const ZERO_CHUNK = Buffer.alloc(1024 * 1024)

const marker = (name: string): TarHeader => ({ name, type: 'file', mode: 0o100644, size: 0, mtime: new Date(0) })
