import { ArchiveError } from '../errors.js'
import { isDeltaMeta, readDeltaMeta, type DeltaMeta } from './delta.js'
import { defaultRoot, EntryGuard, readMountEntry, type EntryHeader, type EntryType } from './entry.js'
import { forEachEntry, openArchive } from './tar-io.js'

/**
 * The tree a chain describes: a full mount archive (`layers[0]`) and the
 * deltas applied on it in order (see delta.ts), read as one sequence of
 * entries without writing anything. A path takes its entry from the last
 * layer that mentions it; a path a later delta removes is left out. The
 * base's entries come first (in its order), then each delta's. Every
 * entry passes one EntryGuard over the whole composed tree (so a hardlink
 * must point to a file sent before it), and with deltas every entry's
 * parent must be a directory of the composed tree: a chain that does not
 * fit together is refused as a whole, never applied in part.
 */
export type EntryHandler = (entry: EntryHeader, body: AsyncIterable<Buffer> | undefined) => Promise<void>

interface Final {
  layer: number
  type: EntryType | 'deleted'
}

/** The directory holding `path` ('' for the root's entries). */
export const parentOf = (path: string): string => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '')

export async function forEachComposed(layers: readonly string[], onEntry: EntryHandler, maxBytes?: number): Promise<void> {
  const [base, ...deltas] = layers
  if (base === undefined) throw new Error('a chain needs its base archive')
  const final = await finalLayers(deltas, maxBytes)
  const guard = new EntryGuard()
  const dirs = new Set<string>()
  const parents = new Set<string>()
  const emit = async (e: EntryHeader, body?: AsyncIterable<Buffer>): Promise<void> => {
    guard.check(e)
    if (e.type === 'directory') dirs.add(e.path)
    if (e.path !== '' && deltas.length > 0) parents.add(parentOf(e.path))
    await onEntry(e, e.type === 'file' ? body : undefined)
  }
  let sawRoot = false
  await forEachEntry(await openArchive(base, maxBytes), async (h, body) => {
    if (isDeltaMeta(h) && !sawRoot) throw new ArchiveError('ARCHIVE_DELTA_INVALID', 'the base of a chain is a delta entry')
    const e = readMountEntry(h)
    // The first root only, a default root when none comes first (what every reader of a mount archive does).
    if (e.path === '') {
      if (sawRoot) return
      sawRoot = true
      if (!final.has('')) await emit(e)
      return
    }
    if (!sawRoot) {
      sawRoot = true
      if (!final.has('')) await emit(defaultRoot())
    }
    if (!final.has(e.path)) await emit(e, body)
  })
  if (!sawRoot && !final.has('')) await emit(defaultRoot())
  for (const [i, delta] of deltas.entries()) {
    await forEachDeltaEntry(delta, maxBytes, async (e, body) => {
      const f = final.get(e.path)
      if (f?.layer === i + 1 && f.type !== 'deleted') await emit(e, body)
    })
  }
  for (const dir of parents) {
    if (!dirs.has(dir)) {
      throw new ArchiveError(
        'ARCHIVE_DELTA_INVALID',
        `the deltas do not fit their base: ${JSON.stringify(dir)} is not a directory of the result`,
        dir
      )
    }
  }
}

/** Which layer each path the deltas mention comes from (1-based), or that it was removed. */
async function finalLayers(deltas: readonly string[], maxBytes: number | undefined): Promise<Map<string, Final>> {
  const final = new Map<string, Final>()
  for (const [i, delta] of deltas.entries()) {
    const layer = i + 1
    const meta = await forEachDeltaEntry(delta, maxBytes, async e => {
      final.set(e.path, { layer, type: e.type })
    })
    // Removals of the same delta are paths its parent had; they never name what it adds.
    for (const path of meta.deleted) if (final.get(path)?.layer !== layer) final.set(path, { layer, type: 'deleted' })
  }
  return final
}

/** Reads one delta: its meta record (returned), then each tree entry. */
export async function forEachDeltaEntry(
  path: string,
  maxBytes: number | undefined,
  onEntry: (e: EntryHeader, body: AsyncIterable<Buffer>) => Promise<void>
): Promise<DeltaMeta> {
  let meta: DeltaMeta | undefined
  await forEachEntry(await openArchive(path, maxBytes), async (h, body) => {
    if (meta === undefined) {
      if (!isDeltaMeta(h)) throw new ArchiveError('ARCHIVE_DELTA_INVALID', 'not a delta entry (no meta record first)')
      meta = await readDeltaMeta(h, body)
      return
    }
    await onEntry(readMountEntry(h), body)
  })
  if (meta === undefined) throw new ArchiveError('ARCHIVE_DELTA_INVALID', 'an empty delta entry')
  return meta
}

/** The meta record of an archive that is a delta, undefined for a full mount archive. */
export async function deltaMetaOf(path: string): Promise<DeltaMeta | undefined> {
  let meta: DeltaMeta | undefined
  let first = true
  // Thrown by the callback to stop after the first entry; forEachEntry passes an ArchiveError through as is.
  const stop = new ArchiveError('ARCHIVE_UNEXPECTED', 'first entry read')
  try {
    await forEachEntry(await openArchive(path), async (h, body) => {
      if (first && isDeltaMeta(h)) meta = await readDeltaMeta(h, body)
      first = false
      throw stop
    })
  } catch (error) {
    if (error !== stop) throw error
  }
  return meta
}
