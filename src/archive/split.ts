import { createWriteStream } from 'node:fs'
import { type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import * as tar from 'tar-stream'

import { ArchiveError, errorMessage } from '../errors.js'
import { deltaMetaText, DELTA_META_NAME, type DeltaMeta } from './delta.js'
import { TreeDigest, type ArchiveSummary } from './digest.js'
import { defaultRoot, EntryGuard, relativeEntryPath, toEntryHeader, unsafeModeBits } from './entry.js'
import { excludeMatcher } from './exclude.js'
import { forEachEntry, oneChunk, toTarHeader, WRITE_CHUNK, writeEntry } from './tar-io.js'

export type { ArchiveSummary } from './digest.js'

interface SplitOutput {
  excluded: (path: string) => boolean
  pack: tar.Pack
  written: Promise<void>
  /** Why writing the archive failed, when it did before the split ended (a full disk). */
  writeError?: unknown
  digest: TreeDigest
  guard: EntryGuard
  sawRoot: boolean
  /** The meta record being written, first in a delta. */
  pending?: Promise<void>
  /** Removed paths, when this output is a delta (no root of its own unless the root changed). */
  deleted?: string[]
}

export interface SplitTarget {
  /** Top-level directory of the exported tree that holds this mount. */
  dir: string
  archivePath: string
  /** Paths or globs relative to the mount root to leave out (with everything below them). */
  exclude?: string[]
  /** The chain a delta of this mount would continue; the stream decides whether one comes (`deletedOf`). */
  delta?: Omit<DeltaMeta, 'deleted'>
}

/** A delta's summary: the tree digest covers only the entries it holds. */
export interface SplitSummary extends ArchiveSummary {
  /** Set when the mount came as a delta: how many paths it removes. */
  deleted?: number
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
  onOther?: (name: string, body: AsyncIterable<Buffer>) => Promise<void>,
  deletedOf: (dir: string) => string[] | undefined = () => undefined
): Promise<Map<string, SplitSummary>> {
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
    const excluded = excludeMatcher(t.exclude)
    const deleted = t.delta ? deletedOf(dir)?.filter(p => !excluded(p)) : undefined
    const state: SplitOutput = {
      excluded,
      pack,
      written,
      digest: new TreeDigest(),
      guard: new EntryGuard(),
      sawRoot: false,
      ...(deleted ? { deleted } : {})
    }
    written.catch((error: unknown) => {
      state.writeError ??= error
    })
    outputs.set(dir, state)
    if (t.delta && deleted) {
      // A delta entry starts with its meta record (delta.ts); the removals go into the digest too.
      const meta = deltaMetaText({ ...t.delta, deleted })
      state.pending = writeEntry(pack, { name: DELTA_META_NAME, type: 'file', mode: 0o100644, size: meta.length, mtime: new Date(0) }, oneChunk(meta))
      for (const p of deleted) state.digest.removed(p)
    }
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
      if (out.pending) {
        await out.pending
        delete out.pending
      }
      if (out.deleted) {
        // A delta holds the entries that changed, the root only when it did.
        out.guard.check(entry)
        out.digest.header(entry)
        await writeEntry(out.pack, toTarHeader(entry, path === '' ? './' : path, linkname), entry.type === 'file' ? body : undefined, c =>
          out.digest.content(c)
        )
        return
      }
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
  // A delta whose changes the stream holds no entry of (every one excluded) still needs its entry.
  for (const t of targets) if (t.delta && deletedOf(t.dir) && !outputs.has(t.dir)) outputFor(t.dir)
  const result = new Map<string, SplitSummary>()
  for (const [dir, out] of outputs) {
    await out.pending
    if (!out.sawRoot && !out.deleted) {
      const root = defaultRoot()
      out.digest.header(root)
      await writeEntry(out.pack, toTarHeader(root, './'))
    }
    out.pack.finalize()
    await out.written
    result.set(dir, {
      digest: out.digest.digest(),
      bytes: out.digest.bytes,
      entries: out.digest.entries,
      ...(out.deleted ? { deleted: out.deleted.length } : {})
    })
  }
  return result
}
