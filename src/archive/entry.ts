import type * as tar from 'tar-stream'

import { ArchiveError } from '../errors.js'

export type TarHeader = Partial<tar.Header> & { name: string }

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
export const MAX_USTAR_ID = 0o777777
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

/** Converts a tar-stream header (validated) into an EntryHeader with `path` relative to `strip`. */
export function toEntryHeader(h: TarHeader, path: string, linkname: string | undefined): EntryHeader {
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

export function readMountEntry(h: TarHeader): EntryHeader {
  const path = relativeEntryPath(h.name)
  const linkname = h.type === 'link' ? relativeEntryPath(h.linkname ?? '') : h.type === 'symlink' ? (h.linkname ?? '') : undefined
  return toEntryHeader(h, path, linkname)
}

/** Root entry for a tree that arrived without one (BuildKit's default cache-mount root). */
export function defaultRoot(): EntryHeader {
  return { path: '', type: 'directory', mode: 0o755, uid: 0, gid: 0, mtime: new Date(0), size: 0 }
}
