import type { Readable } from 'node:stream'

import * as tar from 'tar-stream'

import { cachePath, FIXUPS_FILE } from '../builder/dockerfile.js'
import { forEachComposed, parentOf } from './compose.js'
import { defaultRoot, EntryGuard, readMountEntry, type EntryHeader } from './entry.js'
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
export interface StreamMount {
  index: number
  /** The mount archive, or the base of a chain. */
  archivePath: string
  /** Delta entries to apply on it, in order (compose.ts); checked with scanChain first. */
  deltas?: string[]
}

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
 * build the stream is complete. Archives must have passed scanMountArchive;
 * they are checked again while streaming.
 */
export function injectStream(mounts: AsyncIterable<StreamMount>): Readable {
  const pack = tar.pack()
  const fixups = new FixupList()
  const fill = async (): Promise<void> => {
    for await (const m of mounts) await packMount(pack, m, fixups)
    const text = Buffer.from(fixups.text())
    await writeEntry(pack, { name: FIXUPS_FILE, type: 'file', mode: 0o100644, size: text.length, mtime: new Date(0) }, oneChunk(text))
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}

async function packMount(pack: tar.Pack, m: StreamMount, fixups: FixupList): Promise<void> {
  const top = cachePath(m.index).replace(/^\/bmc\//, '')
  const guard = new EntryGuard()
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

  if (m.deltas !== undefined && m.deltas.length > 0) {
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
    return
  }
  await forEachEntry(await openArchive(m.archivePath), async (h, body) => {
    const e = readMountEntry(h)
    guard.check(e)
    if (e.path === '') {
      if (!sawRoot) open.push(e)
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
    await send(e, e.type === 'file' ? body : undefined)
  })
  if (!sawRoot) open.push(defaultRoot())
  while (open.length > 0) await send(open.pop() as EntryHeader)
}
