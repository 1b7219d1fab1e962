import { createHash, type Hash } from 'node:crypto'
import { constants, createWriteStream } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import * as tar from 'tar-stream'

import { ArchiveError, errorMessage } from './errors.js'

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

/**
 * Longest entry path (bytes, relative to the mount root). The generated builds
 * put it under /bmc/out/<n>/ or /bmc/c<n>/, and the whole must stay below
 * PATH_MAX (4096) or `cp -a` fails, and with it the build of every mount.
 */
const MAX_PATH_BYTES = 4000
/** Longest path component (NAME_MAX). */
const MAX_NAME_BYTES = 255
/** Longest symlink target (PATH_MAX - 1). */
const MAX_LINK_BYTES = 4095
/** Owners must be valid Linux ids (uid_t; 2^32-1 is "no id"). */
const MAX_OWNER_ID = 2 ** 32 - 2
/** Largest mtime the ustar header holds (11 octal digits of seconds). */
const MAX_MTIME_SECONDS = 8 ** 11 - 1
/** Largest uid/gid the ustar header field of tar-stream holds; larger ones go into a pax record. */
const MAX_USTAR_ID = 0o777777
const SUPPORTED: ReadonlySet<string> = new Set(['file', 'contiguous-file', 'directory', 'symlink', 'link'])

/**
 * Mode bits a restored archive may not carry: setuid anywhere, setgid on
 * anything but a directory (setgid directories, group inheritance, are
 * common in shared caches and harmless; sticky bits are kept). A cache
 * mount has no business holding privilege-raising executables, and an
 * archive this action saved never has them (splitExport strips them), so
 * an archive that does was made by someone else: it is refused.
 */
export function unsafeModeBits(type: EntryType, mode: number): number {
  return mode & (type === 'directory' ? 0o4000 : 0o6000)
}

/**
 * Normalises a tar entry name to a path relative to the archive root and
 * refuses names that could land outside it or break the generated builds:
 * absolute paths, `..`, NUL, CR or newline characters, components longer
 * than NAME_MAX, paths longer than MAX_PATH_BYTES. Returns '' for the root.
 */
export function relativeEntryPath(name: string): string {
  if (/[\0\n\r]/.test(name)) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `unsafe entry name ${JSON.stringify(name.slice(0, 80))}`, name)
  }
  if (name.startsWith('/')) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `absolute entry name ${JSON.stringify(name.slice(0, 200))}`, name)
  }
  const parts = name.split('/').filter(p => p !== '' && p !== '.')
  if (parts.includes('..')) {
    throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `entry name with ".." ${JSON.stringify(name.slice(0, 200))}`, name)
  }
  const path = parts.join('/')
  if (Buffer.byteLength(path) > MAX_PATH_BYTES || parts.some(p => Buffer.byteLength(p) > MAX_NAME_BYTES)) {
    throw new ArchiveError(
      'ARCHIVE_PATH_UNSAFE',
      `entry name too long (${MAX_NAME_BYTES} bytes per component, ${MAX_PATH_BYTES} in all) ${JSON.stringify(name.slice(0, 80))}...`,
      name
    )
  }
  return path
}

/**
 * Tracks what an archive has defined so far and refuses entries that would
 * escape the mount or make the extraction in the builder fail (which would
 * take every other mount of the build down with it): a path defined twice
 * (the root excepted: callers keep the first), an entry below a symlink or
 * below anything that is not a directory, a hardlink to anything but an
 * earlier regular file of the archive, an empty or over-long symlink target,
 * privilege-raising mode bits (see unsafeModeBits).
 */
export class EntryGuard {
  private readonly seen = new Map<string, EntryType>()

  check(header: EntryHeader): void {
    const { path, type } = header
    const quoted = JSON.stringify(path)
    if (path === '' && type !== 'directory') {
      throw new ArchiveError('ARCHIVE_ENTRY_TYPE', 'the archive root is not a directory', path)
    }
    if (path !== '' && this.seen.has(path)) {
      throw new ArchiveError('ARCHIVE_PATH_UNSAFE', `entry ${quoted} is defined twice`, path)
    }
    const parts = path === '' ? [] : path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/')
      const parentType = this.seen.get(parent)
      if (parentType === 'symlink') {
        throw new ArchiveError('ARCHIVE_PATH_ESCAPE', `entry ${quoted} goes through symlink ${JSON.stringify(parent)}`, path)
      }
      if (parentType !== undefined && parentType !== 'directory') {
        throw new ArchiveError('ARCHIVE_ENTRY_TYPE', `entry ${quoted} is below ${JSON.stringify(parent)}, which is not a directory`, path)
      }
    }
    if (type === 'link') {
      const target = header.linkname ?? ''
      const targetType = this.seen.get(target)
      // A regular file, or another name of one (tar writers link to the first name, but need not).
      if (target === path || (targetType !== 'file' && targetType !== 'link')) {
        throw new ArchiveError(
          'ARCHIVE_LINK_UNSAFE',
          `hardlink ${quoted} points to ${JSON.stringify(target)}, not an earlier file of the archive`,
          path
        )
      }
    }
    if (type === 'symlink') {
      const target = header.linkname ?? ''
      if (target === '' || target.includes('\0') || Buffer.byteLength(target) > MAX_LINK_BYTES) {
        throw new ArchiveError('ARCHIVE_LINK_UNSAFE', `symlink ${quoted} has an ${target === '' ? 'empty' : 'unusable'} target`, path)
      }
    }
    const unsafe = unsafeModeBits(type, header.mode)
    if (unsafe !== 0) {
      const bits = [unsafe & 0o4000 ? 'setuid' : '', unsafe & 0o2000 ? 'setgid' : ''].filter(Boolean).join(' and ')
      throw new ArchiveError(
        'ARCHIVE_MODE_UNSAFE',
        `entry ${quoted} has the ${bits} bit (mode ${(header.mode & 0o7777).toString(8).padStart(4, '0')})`,
        path
      )
    }
    this.seen.set(path, type)
  }
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
    uid: ownerId(h, 'uid', path),
    gid: ownerId(h, 'gid', path),
    mtime: entryTime(h.mtime, path),
    size: type === 'file' ? (h.size ?? 0) : 0
  }
  if (linkname !== undefined) out.linkname = linkname
  return out
}

/** uid or gid of an entry: a pax record wins over the header field (large ids); garbage is refused. */
function ownerId(h: TarHeader, field: 'uid' | 'gid', path: string): number {
  const pax = (h.pax as Record<string, string> | undefined)?.[field]
  const value = pax !== undefined && /^\d{1,10}$/.test(pax) ? Number(pax) : (h[field] ?? 0)
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_OWNER_ID) {
    throw new ArchiveError('ARCHIVE_HEADER_INVALID', `entry ${JSON.stringify(path)} has an invalid ${field} (${String(value)})`, path)
  }
  return value
}

/** Modification time in whole seconds the ustar field can hold (before 1970 becomes 1970). */
function entryTime(mtime: Date | undefined, path: string): Date {
  const seconds = mtime === undefined ? 0 : Math.floor(mtime.getTime() / 1000)
  if (!Number.isFinite(seconds) || seconds > MAX_MTIME_SECONDS) {
    throw new ArchiveError('ARCHIVE_HEADER_INVALID', `entry ${JSON.stringify(path)} has an invalid modification time`, path)
  }
  return new Date(Math.max(0, seconds) * 1000)
}

const TYPE_BITS: Record<EntryType, number> = { file: 0o100000, directory: 0o040000, symlink: 0o120000, link: 0o100000 }

/** A tar-stream header for `name`; type bits keep a 0000 mode from being replaced by a default. */
export function toTarHeader(h: EntryHeader, name: string, linkname?: string): TarHeader {
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
  // tar-stream writes ids in 6 octal digits and silently clamps larger ones: use pax records.
  if (h.uid > MAX_USTAR_ID || h.gid > MAX_USTAR_ID) out.pax = { uid: String(h.uid), gid: String(h.gid) }
  return out
}

/** Writes one entry into a pack, copying `body` (if any) and feeding every chunk to `onChunk`. */
export async function writeEntry(pack: tar.Pack, header: TarHeader, body?: AsyncIterable<Buffer>, onChunk?: (c: Buffer) => void): Promise<void> {
  const sink = pack.entry(header) as unknown as Writable
  const finished = new Promise<void>((resolve, reject) => {
    sink.once('error', reject)
    sink.once('finish', () => resolve())
    sink.once('close', () => resolve())
  })
  // Awaited below; when the body fails first, the pack is destroyed later and
  // this rejects with nobody waiting: that must not crash the step.
  finished.catch(() => undefined)
  if (body) {
    for await (const chunk of body) {
      onChunk?.(chunk)
      if (!sink.write(chunk)) await drained(sink)
    }
  }
  sink.end()
  await finished
}

/**
 * Waits for 'drain', or for the stream to end another way: a pack destroyed
 * by a failed destination (disk full, the build's stdin gone) never drains,
 * and waiting for it alone would hang the step.
 */
async function drained(stream: Writable): Promise<void> {
  const closed = (): Error => stream.errored ?? new Error('the archive stream was closed')
  if (stream.destroyed) throw closed()
  // Plain listeners, not events.once with an AbortSignal: this runs once per chunk, and aborting builds an error each time.
  await new Promise<void>((resolve, reject) => {
    const settle = (error?: Error): void => {
      stream.off('drain', onDrain)
      stream.off('close', onClose)
      if (error) reject(error)
      else resolve()
    }
    const onDrain = (): void => settle()
    const onClose = (): void => settle(closed())
    stream.on('drain', onDrain)
    stream.on('close', onClose)
  })
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
  let callbackFailure: unknown
  try {
    for await (const entry of extract) {
      await onEntry(entry.header, entry as AsyncIterable<Buffer>)
      entry.resume()
    }
  } catch (error) {
    callbackFailure = error
    extract.destroy()
    source.destroy()
  }
  await feeding.catch(() => undefined)
  // What the callback hit (an unsafe entry, a full disk) is the cause; the
  // pipeline's "premature close" after it is only the consequence.
  failure = callbackFailure ?? failure
  if (failure !== undefined) {
    if (failure instanceof ArchiveError) throw failure
    throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot read archive: ${(failure as Error).message ?? String(failure)}`)
  }
}

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

const HEADER_BYTES = 512
/** Write size for mount archives: fewer, larger writes than the 16 KiB default. */
const WRITE_CHUNK = 1024 ** 2

function tooLarge(maxBytes: number): ArchiveError {
  return new ArchiveError('ARCHIVE_TOO_LARGE', `archive expands past the ${maxBytes}-byte limit (content plus ${HEADER_BYTES} bytes per entry)`)
}

/**
 * Opens a mount archive for reading: a regular file, never through a
 * symlink (a restored entry could plant one pointing at any file of the
 * runner), never blocking on a FIFO or device node.
 */
export async function openArchive(archivePath: string, maxBytes?: number): Promise<Readable> {
  let handle: FileHandle
  try {
    handle = await open(archivePath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ELOOP') throw new ArchiveError('ARCHIVE_NOT_FILE', `not a mount archive: ${archivePath} is a symlink`)
    throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot read archive: ${(error as Error).message}`)
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) throw new ArchiveError('ARCHIVE_NOT_FILE', `not a mount archive: ${archivePath} is not a regular file`)
    // Clearly over the limit without reading it: the file's padding and long-name records aside,
    // it is content plus headers. (Within 2x + 1 MiB, the scan decides.)
    if (maxBytes !== undefined && stat.size > 2 * maxBytes + 1024 ** 2) throw tooLarge(maxBytes)
  } catch (error) {
    await handle.close()
    throw error
  }
  return handle.createReadStream()
}

export function readMountEntry(h: TarHeader): EntryHeader {
  const path = relativeEntryPath(h.name)
  const linkname = h.type === 'link' ? relativeEntryPath(h.linkname ?? '') : h.type === 'symlink' ? (h.linkname ?? '') : undefined
  return toEntryHeader(h, path, linkname)
}

/**
 * A generated build's context, as a tar stream holding only its Dockerfile
 * (the mounts reach the inject build as its own stream: inject-stream.ts).
 */
export function buildContext(dockerfile: string): Readable {
  const pack = tar.pack()
  const fill = async (): Promise<void> => {
    await writeEntry(
      pack,
      { name: 'Dockerfile', type: 'file', mode: 0o100644, size: Buffer.byteLength(dockerfile), mtime: new Date(0) },
      oneChunk(Buffer.from(dockerfile))
    )
    pack.finalize()
  }
  fill().catch((error: unknown) => pack.destroy(error as Error))
  return pack as unknown as Readable
}

export async function* oneChunk(chunk: Buffer): AsyncIterable<Buffer> {
  yield chunk
}

/** Root entry for a tree that arrived without one (BuildKit's default cache-mount root). */
export function defaultRoot(): EntryHeader {
  return { path: '', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: new Date(0), size: 0 }
}

interface SplitOutput {
  excluded: (path: string) => boolean
  pack: tar.Pack
  written: Promise<void>
  /** Why writing the archive failed, when it did before the split ended (a full disk). */
  writeError?: unknown
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
 * Nothing is unpacked on the host. A mount the stream leaves out (the build
 * found it unchanged) gets no archive and no summary. Top-level files go to
 * `onOther` (the build's status file); other entries outside the known
 * directories are ignored (a stray marker must not break a save).
 */
export async function splitExport(
  source: Readable,
  targets: SplitTarget[],
  onOther?: (name: string, body: AsyncIterable<Buffer>) => Promise<void>
): Promise<Map<string, ArchiveSummary>> {
  const byDir = new Map(targets.map(t => [t.dir, t]))
  // Opened on a mount's first entry: a mount the stream leaves out gets no archive and no summary.
  const outputs = new Map<string, SplitOutput>()
  const outputFor = (dir: string): SplitOutput | undefined => {
    const existing = outputs.get(dir)
    if (existing) return existing
    const t = byDir.get(dir)
    if (!t) return undefined
    const pack = tar.pack()
    const written = pipeline(pack as unknown as Readable, createWriteStream(t.archivePath, { highWaterMark: WRITE_CHUNK }))
    const state: SplitOutput = {
      excluded: excludeMatcher(t.exclude),
      pack,
      written,
      digest: new TreeDigest(),
      guard: new EntryGuard(),
      sawRoot: false
    }
    written.catch((error: unknown) => {
      state.writeError ??= error
    })
    outputs.set(dir, state)
    return state
  }
  try {
    await forEachEntry(source, async (h, body) => {
      const full = relativeEntryPath(h.name)
      const slash = full.indexOf('/')
      const top = slash < 0 ? full : full.slice(0, slash)
      const out = outputFor(top)
      if (!out) {
        if (onOther && slash < 0 && h.type === 'file') await onOther(full, body)
        return
      }
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
      // Never stored, so a restore never meets them (see unsafeModeBits).
      entry.mode &= ~unsafeModeBits(entry.type, entry.mode)
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
      await writeEntry(out.pack, toTarHeader(entry, path === '' ? './' : path, linkname), entry.type === 'file' ? body : undefined, c =>
        out.digest.content(c)
      )
    })
  } catch (error) {
    // A destination that failed first (a full disk) explains more than the closed stream it left behind.
    const writeError = [...outputs.values()].find(o => o.writeError !== undefined)?.writeError
    for (const out of outputs.values()) out.pack.destroy(error as Error)
    await Promise.allSettled([...outputs.values()].map(o => o.written))
    if (writeError !== undefined) throw new ArchiveError('ARCHIVE_UNEXPECTED', `cannot write a mount archive: ${errorMessage(writeError)}`)
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
