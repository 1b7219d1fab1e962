import { createHash, type Hash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import * as tar from 'tar-stream'

import { ArchiveError } from './errors.js'

type TarHeader = Partial<tar.Header> & { name: string }

/**
 * Tar stream transforms. Mount archives hold one cache mount each, with names
 * relative to the mount root (the root itself is `./`), exactly the owners,
 * modes, times and links BuildKit exported, and nothing else: regular files,
 * directories, symlinks and hardlinks to earlier entries of the same archive.
 * Archives come back from a cache anyone with write access to the repository
 * scope could have filled, so reading one validates every entry.
 */

export type EntryType = 'file' | 'directory' | 'symlink' | 'link'

export interface EntryHeader {
  /** Relative to the mount root; '' is the root itself. */
  path: string
  type: EntryType
  mode: number
  uid: number
  gid: number
  mtime: Date
  size: number
  /** Symlink target text, or the path (relative to the root) a hardlink points to. */
  linkname?: string
}

export interface ArchiveSummary {
  /** Content digest (see TreeDigest): equal trees give equal digests. */
  digest: string
  /** Bytes of file content. */
  bytes: number
  entries: number
}

const MAX_PATH_LENGTH = 4096
const SUPPORTED: ReadonlySet<string> = new Set(['file', 'contiguous-file', 'directory', 'symlink', 'link'])

/**
 * Normalises a tar entry name to a path relative to the archive root and
 * refuses names that could land outside it: absolute paths, `..`, NUL or
 * newline characters, over-long names. Returns '' for the root.
 */
export function relativeEntryPath(name: string): string {
  if (name.length > MAX_PATH_LENGTH || /[\0\n\r]/.test(name)) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `unsafe entry name ${JSON.stringify(name.slice(0, 80))}`, name)
  }
  if (name.startsWith('/')) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `absolute entry name ${JSON.stringify(name)}`, name)
  }
  const parts = name.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `entry name with ".." ${JSON.stringify(name)}`, name)
  }
  return parts.join('/')
}

/**
 * Tracks what an archive has defined so far and refuses entries that would
 * be written through a symlink or hardlink to something outside the archive.
 */
export class EntryGuard {
  private readonly symlinks = new Set<string>()
  private readonly files = new Set<string>()

  check(header: EntryHeader): void {
    const parts = header.path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/')
      if (this.symlinks.has(parent)) {
        throw new ArchiveError('ARCHIVE_PATH_ESCAPE', `entry ${JSON.stringify(header.path)} goes through symlink ${JSON.stringify(parent)}`, header.path)
      }
    }
    if (header.path === '' && header.type !== 'directory') {
      throw new ArchiveError('ARCHIVE_ENTRY_TYPE', 'the archive root is not a directory', header.path)
    }
    if (header.type === 'link') {
      const target = header.linkname ?? ''
      if (!this.files.has(target)) {
        throw new ArchiveError('ARCHIVE_LINK_UNSAFE', `hardlink ${JSON.stringify(header.path)} points to ${JSON.stringify(target)}, not an earlier file of the archive`, header.path)
      }
    }
    this.symlinks.delete(header.path)
    this.files.delete(header.path)
    if (header.type === 'symlink') this.symlinks.add(header.path)
    if (header.type === 'file') this.files.add(header.path)
  }
}

/**
 * Order-sensitive digest of a tree: every entry's path, type, mode, owner,
 * mtime (seconds), link and content. The root's mtime is left out: it moves
 * whenever anything is added and says nothing on its own.
 */
export class TreeDigest {
  private readonly hash: Hash = createHash('sha256')
  bytes = 0
  entries = 0

  header(h: EntryHeader): void {
    const mtime = h.path === '' ? 0 : Math.floor(h.mtime.getTime() / 1000)
    const fields = [h.type, h.path, (h.mode & 0o7777).toString(8), h.uid, h.gid, mtime, h.size, h.linkname ?? '']
    this.hash.update(`${fields.join('\0')}\n`)
    this.entries++
  }

  content(chunk: Buffer): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
  }

  digest(): string {
    return this.hash.digest('hex')
  }
}

/** Converts a tar-stream header (validated) into an EntryHeader with `path` relative to `strip`. */
function toEntryHeader(h: TarHeader, path: string, linkname: string | undefined): EntryHeader {
  const type = h.type === 'contiguous-file' ? 'file' : h.type
  if (!type || !SUPPORTED.has(type)) {
    throw new ArchiveError('ARCHIVE_ENTRY_TYPE', `entry ${JSON.stringify(path)} has unsupported type ${String(h.type)}`, path)
  }
  const out: EntryHeader = {
    path,
    type: type as EntryType,
    mode: (h.mode ?? 0) & 0o7777,
    uid: h.uid ?? 0,
    gid: h.gid ?? 0,
    mtime: h.mtime ?? new Date(0),
    size: type === 'file' ? (h.size ?? 0) : 0
  }
  if (linkname !== undefined) out.linkname = linkname
  return out
}

const TYPE_BITS: Record<EntryType, number> = { file: 0o100000, directory: 0o040000, symlink: 0o120000, link: 0o100000 }

/** A tar-stream header for `name`; type bits keep a 0000 mode from being replaced by a default. */
function toTarHeader(h: EntryHeader, name: string, linkname?: string): TarHeader {
  const out: TarHeader = {
    name: h.type === 'directory' && !name.endsWith('/') ? `${name}/` : name,
    type: h.type,
    mode: (h.mode & 0o7777) | TYPE_BITS[h.type],
    uid: h.uid,
    gid: h.gid,
    mtime: h.mtime,
    size: h.size
  }
  if (linkname !== undefined) out.linkname = linkname
  return out
}

/** Writes one entry into a pack, copying `body` (if any) and feeding every chunk to `onChunk`. */
async function writeEntry(pack: tar.Pack, header: TarHeader, body?: AsyncIterable<Buffer>, onChunk?: (c: Buffer) => void): Promise<void> {
  const sink = pack.entry(header) as unknown as Writable
  const finished = new Promise<void>((resolve, reject) => {
    sink.once('error', reject)
    sink.once('finish', () => resolve())
    sink.once('close', () => resolve())
  })
  if (body) {
    for await (const chunk of body) {
      onChunk?.(chunk)
      if (!sink.write(chunk)) await once(sink, 'drain')
    }
  }
  sink.end()
  await finished
}

/**
 * Reads a tar stream entry by entry. `onEntry` must consume the body it is
 * given (or not look at it: the rest is drained here). Errors from the source,
 * the parser or the callback end the read and are thrown once.
 */
export async function forEachEntry(source: Readable, onEntry: (header: TarHeader, body: AsyncIterable<Buffer>) => Promise<void>): Promise<void> {
  const extract = tar.extract()
  const feeding = pipeline(source, extract)
  let failure: unknown
  feeding.catch((error: unknown) => {
    failure ??= error
  })
  try {
    for await (const entry of extract) {
      await onEntry(entry.header, entry as AsyncIterable<Buffer>)
      entry.resume()
    }
  } catch (error) {
    failure ??= error
    extract.destroy()
    source.destroy()
  }
  await feeding.catch(() => undefined)
  if (failure !== undefined) {
    if (failure instanceof ArchiveError) throw failure
    throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot read archive: ${(failure as Error).message ?? String(failure)}`)
  }
}

/**
 * Validates a mount archive and returns its digest. Any unsafe or unreadable
 * entry rejects the whole archive (ArchiveError), so callers treat the mount
 * as a cache miss.
 */
export async function scanMountArchive(archivePath: string, limits: { maxBytes: number }): Promise<ArchiveSummary> {
  const guard = new EntryGuard()
  const digest = new TreeDigest()
  await forEachEntry(createReadStream(archivePath), async (h, body) => {
    const entry = readMountEntry(h)
    guard.check(entry)
    digest.header(entry)
    for await (const chunk of body) {
      digest.content(chunk)
      if (digest.bytes > limits.maxBytes) {
        throw new ArchiveError('ARCHIVE_TOO_LARGE', `archive expands past the ${limits.maxBytes}-byte limit`)
      }
    }
  })
  if (digest.entries === 0) throw new ArchiveError('ARCHIVE_UNEXPECTED', 'archive has no entries')
  return { digest: digest.digest(), bytes: digest.bytes, entries: digest.entries }
}

function readMountEntry(h: TarHeader): EntryHeader {
  const path = relativeEntryPath(h.name)
  const linkname = h.type === 'link' ? relativeEntryPath(h.linkname ?? '') : h.type === 'symlink' ? (h.linkname ?? '') : undefined
  return toEntryHeader(h, path, linkname)
}

export interface ContextMount {
  /** Directory name inside the build context. */
  dir: string
  archivePath: string
}

/**
 * A generated build's context, as a tar stream: the Dockerfile, then each
 * mount archive's entries under its context directory. Archives
 * must have passed scanMountArchive; they are checked again while streaming.
 */
export function buildContext(dockerfile: string, mounts: ContextMount[]): Readable {
  const pack = tar.pack()
  const fill = async (): Promise<void> => {
    await writeEntry(pack, { name: 'Dockerfile', type: 'file', mode: 0o100644, size: Buffer.byteLength(dockerfile), mtime: new Date(0) }, oneChunk(Buffer.from(dockerfile)))
    for (const m of mounts) {
      const guard = new EntryGuard()
      let sawRoot = false
      await forEachEntry(createReadStream(m.archivePath), async (h, body) => {
        const entry = readMountEntry(h)
        guard.check(entry)
        if (entry.path === '') {
          if (sawRoot) return
          sawRoot = true
        } else if (!sawRoot) {
          await writeEntry(pack, { name: `${m.dir}/`, type: 'directory', mode: 0o040755, mtime: new Date(0) })
          sawRoot = true
        }
        const name = entry.path === '' ? `${m.dir}/` : `${m.dir}/${entry.path}`
        const link = entry.type === 'link' ? `${m.dir}/${entry.linkname}` : entry.linkname
        await writeEntry(pack, toTarHeader(entry, name, link), entry.type === 'file' ? body : undefined)
      })
    }
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}

async function* oneChunk(chunk: Buffer): AsyncIterable<Buffer> {
  yield chunk
}

/** Root entry for a tree that arrived without one (BuildKit's default cache-mount root). */
function defaultRoot(): EntryHeader {
  return { path: '', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: new Date(0), size: 0 }
}

interface SplitOutput {
  excluded: (path: string) => boolean
  pack: tar.Pack
  written: Promise<void>
  digest: TreeDigest
  guard: EntryGuard
  sawRoot: boolean
}

export interface SplitTarget {
  /** Top-level directory of the exported tree that holds this mount. */
  dir: string
  archivePath: string
  /** Paths or globs relative to the mount root to leave out (with everything below them). */
  exclude?: string[]
}

/**
 * Compiles exclude patterns: `*` and `?` stay within one path segment, `**`
 * crosses segments; a pattern matching a directory excludes all below it.
 */
export function excludeMatcher(patterns: string[] = []): (path: string) => boolean {
  if (patterns.length === 0) return () => false
  const regexes = patterns.map(p => {
    const clean = relativeEntryPath(p)
    let re = ''
    for (let i = 0; i < clean.length; i++) {
      const c = clean[i] ?? ''
      if (c === '*' && clean[i + 1] === '*') {
        re += '.*'
        i++
      } else if (c === '*') re += '[^/]*'
      else if (c === '?') re += '[^/]'
      else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&')
    }
    return new RegExp(`^${re}$`)
  })
  return path => {
    if (path === '') return false
    const parts = path.split('/')
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/')
      if (regexes.some(r => r.test(prefix))) return true
    }
    return false
  }
}

/**
 * Splits the extract build's output (one top-level directory per mount) into
 * one mount archive per directory, computing each tree's digest on the way.
 * Nothing is unpacked on the host. Entries outside the known directories are
 * ignored (the exporter adds none, but a stray marker must not break a save).
 */
export async function splitExport(source: Readable, targets: SplitTarget[]): Promise<Map<string, ArchiveSummary>> {
  const outputs = new Map<string, SplitOutput>(
    targets.map((t): [string, SplitOutput] => {
      const pack = tar.pack()
      const written = pipeline(pack as unknown as Readable, createWriteStream(t.archivePath))
      written.catch(() => undefined)
      const state = { excluded: excludeMatcher(t.exclude), pack, written, digest: new TreeDigest(), guard: new EntryGuard(), sawRoot: false }
      return [t.dir, state]
    })
  )
  try {
    await forEachEntry(source, async (h, body) => {
      const full = relativeEntryPath(h.name)
      const slash = full.indexOf('/')
      const top = slash < 0 ? full : full.slice(0, slash)
      const out = outputs.get(top)
      if (!out) return
      const path = slash < 0 ? '' : full.slice(slash + 1)
      if (out.excluded(path)) return
      let linkname: string | undefined
      if (h.type === 'link') {
        const target = relativeEntryPath(h.linkname ?? '')
        if (!target.startsWith(`${top}/`)) {
          throw new ArchiveError('ARCHIVE_LINK_UNSAFE', `hardlink ${JSON.stringify(full)} crosses mounts`, full)
        }
        linkname = target.slice(top.length + 1)
        // A hardlink into an excluded path has nothing left to point to.
        if (out.excluded(linkname)) return
      } else if (h.type === 'symlink') {
        linkname = h.linkname ?? ''
      }
      const entry = toEntryHeader(h, path, linkname)
      if (path !== '' && !out.sawRoot) {
        // The exporter always sends a directory before its contents; keep the invariant anyway.
        const root = defaultRoot()
        out.guard.check(root)
        out.digest.header(root)
        await writeEntry(out.pack, toTarHeader(root, './'))
      }
      if (path === '') {
        if (out.sawRoot) return
      }
      out.sawRoot = true
      out.guard.check(entry)
      out.digest.header(entry)
      await writeEntry(out.pack, toTarHeader(entry, path === '' ? './' : path, linkname), entry.type === 'file' ? body : undefined, c => out.digest.content(c))
    })
  } catch (error) {
    for (const out of outputs.values()) out.pack.destroy(error as Error)
    await Promise.allSettled([...outputs.values()].map(o => o.written))
    throw error
  }
  const result = new Map<string, ArchiveSummary>()
  for (const [dir, out] of outputs) {
    if (!out.sawRoot) {
      const root = defaultRoot()
      out.digest.header(root)
      await writeEntry(out.pack, toTarHeader(root, './'))
    }
    out.pack.finalize()
    await out.written
    result.set(dir, { digest: out.digest.digest(), bytes: out.digest.bytes, entries: out.digest.entries })
  }
  return result
}
